"""Which CPU code computes the numbers: pinned, so the same config gives the same bits anywhere.

A float sum depends on the order its terms are added in, and OpenBLAS orders a matrix product's
sums by its kernel set (chosen for the CPU when the library loads) and by how many threads
share the product; numpy's own loops differ between its AVX2 and AVX-512 versions. The
`compute` config group (conf/compute/) decides:

    portable_bits   OpenBLAS's Haswell kernels, 1 thread, numpy's loops up to AVX2 (X86_V3):
                    the same bits on every x86-64 CPU with AVX2 and FMA, Intel or AMD (the
                    default; benchmarks/determinism.py measures what it costs). The cores are
                    used all the same: the network's products are shared out by rows over
                    `lanes` threads, each on one BLAS thread, a division that gives the bits
                    of the one-thread product whatever the count (pipeline/nn/lanes.py)
    native_speed    whatever the library picks for this CPU, on every core: faster, but the
                    bits then differ from one machine to another

These are environment variables the libraries read once, when they load, so a stage whose
process runs with other settings starts itself again (`os.execve`, the same PID, before any
work) with them set; `in_force()` reads back from the loaded libraries what actually runs.
A CPU that cannot run the pinned kernel (no AVX2 or FMA; not x86-64) is told once, and its
runs record what it used.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import cache

from pipeline.plumbing.errors import PipelineError

KERNEL_ENV = "OPENBLAS_CORETYPE"
THREADS_ENV = "OPENBLAS_NUM_THREADS"
NUMPY_SIMD_ENV = "NPY_DISABLE_CPU_FEATURES"
RESTARTED_ENV = "PIPELINE_COMPUTE_RESTARTED"  # set by the restart, so it can never loop
PARALLEL_JOBS_ENV = "PIPELINE_PARALLEL_JOBS"  # set by a sweep: its jobs that run at once
# numpy 2's dispatch targets, lowest first; capping at one disables those above it.
NUMPY_TARGETS = ("X86_V2", "X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR")
# What a CPU must have for OpenBLAS's Haswell kernels (numpy's names for the features).
HASWELL_NEEDS = ("AVX2", "FMA3")


def check_settings(compute) -> None:
    """Raise `PipelineError` naming each `compute.*` value no library would accept."""
    problems = []
    if compute.blas_threads is not None and compute.blas_threads < 1:
        problems.append(f"compute.blas_threads={compute.blas_threads} must be >= 1 or null")
    if compute.numpy_max_simd is not None and compute.numpy_max_simd not in NUMPY_TARGETS:
        problems.append(
            f"compute.numpy_max_simd={compute.numpy_max_simd} must be one of "
            f"{', '.join(NUMPY_TARGETS[:3])} or null"
        )
    if compute.lanes is not None and compute.lanes < 1:
        problems.append(f"compute.lanes={compute.lanes} must be >= 1 or null")
    if compute.blas_kernel is not None and not compute.blas_kernel.isalnum():
        problems.append(f"compute.blas_kernel={compute.blas_kernel!r} is not an OpenBLAS core name")
    if problems:
        raise PipelineError(
            "; ".join(problems) + " (or pick a preset: compute=portable_bits | native_speed)"
        )


def wanted_env(blas_kernel: str | None, blas_threads: int | None, numpy_max_simd: str | None):
    """The environment the settings ask for: {variable: value}; None leaves it as it is."""
    wanted: dict[str, str] = {}
    if blas_kernel is not None:
        wanted[KERNEL_ENV] = blas_kernel
    if blas_threads is not None:
        wanted[THREADS_ENV] = str(blas_threads)
    if numpy_max_simd is not None:
        above = NUMPY_TARGETS[NUMPY_TARGETS.index(numpy_max_simd) + 1 :]
        wanted[NUMPY_SIMD_ENV] = " ".join(above)
    return wanted


def wanted_for(compute, stage: str) -> dict[str, str]:
    """The environment `compute` asks for on this CPU: one that cannot run the Haswell
    kernels keeps the rest pinned, and is told so once."""
    check_settings(compute)
    kernel = compute.blas_kernel
    if kernel == "Haswell" and not cpu_runs_haswell():
        kernel = None
        say_once(
            f"{stage}: note: this CPU ({cpu_model()}, {platform.machine()}) cannot run the "
            "pinned Haswell kernels (AVX2 and FMA); it computes with what OpenBLAS picks, so its "
            "bits may differ from an AVX2 machine's; the run records the kernel it used"
        )
    return wanted_env(kernel, compute.blas_threads, compute.numpy_max_simd)


def pin(compute, stage: str) -> dict[str, str]:
    """Make this process compute with `compute` (a `ComputeConfig`): restart it with the
    environment the settings need if it runs with other ones, else return `in_force()`. Call
    it in a stage's main(), before any work: the restart begins the process again."""
    wanted = wanted_for(compute, stage)
    if all(os.environ.get(name) == value for name, value in wanted.items()):
        record = in_force(compute.name)
        print(f"{stage}: {describe(record)}", flush=True)
        return record
    if os.environ.get(RESTARTED_ENV):
        raise PipelineError(
            f"{stage} restarted itself with {wanted} but runs with other settings; unset "
            f"{', '.join(wanted)} in the environment, or use compute=native_speed"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], restart_env(wanted))
    raise AssertionError("unreachable")  # pragma: no cover - execve does not return


def restart_env(wanted: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **wanted, RESTARTED_ENV: "1"}


def check_in_force(compute, stage: str) -> dict[str, str]:
    """For a process that cannot restart (a sweep job in a worker): the settings in force,
    or a `PipelineError` if they are not the ones `compute` asks for."""
    wanted = wanted_for(compute, stage)
    differing = [name for name, value in wanted.items() if os.environ.get(name) != value]
    if differing:
        raise PipelineError(
            f"{stage}: this process computes with other settings than compute={compute.name} "
            f"asks for ({', '.join(differing)}); a sweep cannot vary the compute group: start "
            "one sweep per compute preset"
        )
    return in_force(compute.name)


def usable_cores() -> int:
    """The CPUs this process may run on (`taskset` narrows them), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lanes_for(compute) -> int:
    """Threads that share each large matrix product (pipeline/nn/lanes.py): `compute.lanes`,
    else the usable cores, divided among the sweep jobs that run beside this one. The count
    changes the speed only, never the bits."""
    if compute.lanes is not None:
        return compute.lanes
    jobs = os.environ.get(PARALLEL_JOBS_ENV, "1")
    return max(1, usable_cores() // max(1, int(jobs) if jobs.isdigit() else 1))


@cache
def say_once(message: str) -> None:
    print(message, file=sys.stderr)


def numpy_features() -> dict[str, bool]:
    from numpy._core._multiarray_umath import __cpu_features__

    return __cpu_features__


def cpu_runs_haswell() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    features = numpy_features()
    return all(features.get(name) for name in HASWELL_NEEDS)


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(record: dict[str, str]) -> str:
    """One line for a stage's log: what computes, as read back from the libraries."""
    return (
        f"compute={record['compute.preset']}: {record['compute.blas']}, "
        f"{record['compute.blas_kernel']} kernels on {record['compute.blas_threads']} "
        f"thread(s); numpy SIMD up to {record['compute.numpy_simd']}"
    )


def in_force(preset: str) -> dict[str, str]:
    """What computes in this process, read back from the loaded libraries: the record a run
    keeps (tags `compute.*`) and `reproduce` compares."""
    import numpy as np
    from threadpoolctl import threadpool_info

    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    features = numpy_features()
    simd = [target for target in NUMPY_TARGETS if features.get(target)]
    return {
        "compute.preset": preset,
        "compute.blas": (
            f"{blas[0].get('internal_api')} {blas[0].get('version')}" if blas else "none found"
        ),
        "compute.blas_kernel": str(blas[0].get("architecture")) if blas else "none",
        "compute.blas_threads": str(blas[0].get("num_threads")) if blas else "none",
        "compute.numpy": np.__version__,
        "compute.numpy_simd": simd[-1] if simd else "baseline",
        "compute.cpu": f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} cores)",
    }


@cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed blocks of up to 32 MiB. By default a block over
    128 KiB is mapped fresh from the kernel and handed back when freed, and a training step
    frees and asks again for several such arrays (distorting a batch ran 3× slower for the
    page faults). The speed only: no number changes. False where the C library is not glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 64 << 20))
