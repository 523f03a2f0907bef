"""The compute presets: which environment each asks for, bad values named, and (slow) the
settings read back from the BLAS library inside a stage's own process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.plumbing.compute import check_settings, wanted_env
from pipeline.plumbing.errors import PipelineError
from tests import configs
from tests.conftest import QUICK, project_with_data, tool_env


def compute_of(preset: str):
    return configs.config(f"compute={preset}").compute


def test_portable_bits_pins_the_haswell_kernels_one_thread_and_numpy_up_to_avx2():
    compute = compute_of("portable_bits")
    assert wanted_env(compute.blas_kernel, compute.blas_threads, compute.numpy_max_simd) == {
        "OPENBLAS_CORETYPE": "Haswell",
        "OPENBLAS_NUM_THREADS": "1",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    }
    assert configs.config().compute == compute  # the default


def test_native_speed_leaves_the_environment_alone():
    compute = compute_of("native_speed")
    assert wanted_env(compute.blas_kernel, compute.blas_threads, compute.numpy_max_simd) == {}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("compute.blas_threads=0", "compute.blas_threads=0 must be >= 1"),
        ("compute.numpy_max_simd=AVX9", "compute.numpy_max_simd=AVX9 must be one of"),
        ("compute.blas_kernel='Has well'", "compute.blas_kernel='Has well' is not an OpenBLAS"),
    ],
)
def test_a_bad_compute_value_is_named_with_the_presets(override, named):
    compute = configs.config(override).compute
    with pytest.raises(PipelineError, match=r"portable_bits \| native_speed") as raised:
        check_settings(compute)
    assert named in str(raised.value)


def native_blas() -> dict:
    """What OpenBLAS picks in a fresh process with none of the pinning variables set."""
    code = (
        "import json, numpy; from threadpoolctl import threadpool_info; "
        "print(json.dumps([i for i in threadpool_info() if i['user_api'] == 'blas'][0]))"
    )
    env = {k: v for k, v in tool_env().items() if not k.startswith(("OPENBLAS", "NPY_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return json.loads(done.stdout)


@pytest.mark.slow
def test_a_stage_started_with_other_settings_restarts_itself_pinned(tmp_path):
    project = project_with_data(tmp_path / "project")
    # A shell that asked for 2 threads and no kernel: the stage must not compute with them.
    env = {**tool_env(), "OPENBLAS_NUM_THREADS": "2"}
    args = [sys.executable, "-m", "pipeline.train", *QUICK, "tracking.enabled=false"]
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "compute=" in line]
    assert "Haswell kernels on 1 thread(s); numpy SIMD up to X86_V3" in line, line
    assert line.startswith("train: compute=portable_bits: openblas 0.3.")


@pytest.mark.slow
def test_native_speed_computes_with_what_openblas_picks(tmp_path):
    project = project_with_data(tmp_path / "project")
    args = [sys.executable, "-m", "pipeline.train", *QUICK, "tracking.enabled=false",
            "compute=native_speed"]  # fmt: skip
    env = {k: v for k, v in tool_env().items() if not k.startswith(("OPENBLAS", "NPY_"))}
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    native = native_blas()
    expected = f"{native['architecture']} kernels on {native['num_threads']} thread(s)"
    assert expected in done.stdout


def test_a_cpu_without_avx2_is_told_once_and_keeps_the_rest_pinned(monkeypatch, capsys):
    from pipeline.plumbing import compute as compute_module

    monkeypatch.setattr(compute_module, "cpu_runs_haswell", lambda: False)
    compute_module.say_once.cache_clear()
    # Threads and numpy's level are pinned as asked; the kernel is left to OpenBLAS.
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    for _ in range(2):
        record = compute_module.pin(compute_of("portable_bits"), "train")  # no restart
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "cannot run the pinned Haswell kernels" in notes[0]
    assert record["compute.preset"] == "portable_bits"
    assert record["compute.blas_kernel"]  # what it used instead, for the run's tags


def test_freed_memory_is_kept_for_reuse_where_the_c_library_is_glibc():
    import platform

    from pipeline.plumbing.compute import keep_freed_memory

    # mallopt answers 1 only for a parameter and value it accepts: both settings took.
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
