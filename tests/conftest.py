"""Shared fixtures: small synthetic MNIST-format IDX files, a temporary copy of the project,
and real MLflow SQLite stores.

The synthetic images encode their own index in the first two pixels, so tests can tell which
examples went where after a split or shuffle. Creating an MLflow store (schema migrations) takes
seconds, so one migrated template is made per session (or taken from pytest's cache, where the
last one is kept) and copied (milliseconds) per test; the whole session logs to a store in a
temp dir, never to the project's mlflow.db.
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import gc
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from pipeline.data.idx import write_idx
from pipeline.plumbing.compute import wanted_for
from pipeline.plumbing.schema import DataFiles, FileSpec

REPO = Path(__file__).resolve().parent.parent


def pin_subprocesses() -> None:
    """Start every stage and sweep the tests run already pinned as compute=portable_bits pins
    them: a stage started otherwise restarts itself (compute.pin), a second interpreter and
    set of imports per stage that only tests/plumbing/test_compute.py is there to see."""
    preset = yaml.safe_load((REPO / "conf" / "compute" / "portable_bits.yaml").read_text())
    os.environ.update(wanted_for(SimpleNamespace(**preset), "tests"))


pin_subprocesses()

# Several tests press Ctrl-C (SIGINT) on what they start. A shell that started the suite in the
# background without job control (`(make test &)`) made SIGINT ignored, and the stages keep an
# ignored SIGINT ignored, as `cmd &` asks: give the suite's processes Python's own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Tests that share a session's server, or that time signals and retries, run in one xdist
# worker (`pytest -n 2 --dist loadgroup`): one server started, and no two timing tests at once.
# So do a module's tests that share its server or browser: started once, not once a worker.
XDIST_GROUPS = {
    "tests/server/": "server",
    "tests/sweeps/test_interrupted.py": "timing",
    "tests/tracking/test_lost_server.py": "timing",
    "tests/explorer/test_browser.py": "browser",
    "tests/serving/test_served_model.py": "serving",
    # The quick tests that need MLflow: one worker imports it (a second, or three on a Zen 3),
    # not both. Their modules import it in their tests, not at the top, and `make test-fast` does
    # not import the modules marked slow as a whole (pytest_ignore_collect below).
    "tests/tracking/test_registry.py": "mlflow",
    "tests/tracking/test_runs.py": "mlflow",
    "tests/tracking/test_store.py": "mlflow",
    "tests/serving/test_pyfunc.py": "mlflow",
    "tests/sweeps/test_study_records.py": "mlflow",
    # The quick tests that draw figures: one worker imports matplotlib (0.4 s), not both.
    "tests/evaluation/test_reports.py": "matplotlib",
    "tests/explorer/test_app.py": "matplotlib",
    "tests/explorer/test_malformed_requests.py": "matplotlib",
    # Each shipped preset composed once (tests/configs.py keeps a worker's compositions), and
    # test_ladder.py's rows test, marked with this group, reads the same ones.
    "tests/training/test_hyperparameters.py": "presets",
}


# The slow tests that take longest (10-40 s each on a 2-core Xeon; the server's and the timing
# tests' groups are longer still, and go first of all):
LONGEST_SLOW = (
    "tests/test_ladder.py",
    "tests/test_resume.py",
    "tests/test_reproduce.py",
    "tests/test_dvc_pipeline.py",
    "tests/test_mounted_volumes.py",
    "tests/sweeps/test_sweeps.py",
)

# The quick tests that take longest (they start interpreters, or draw hundreds of examples):
# first among the quick ones, so that `make test-fast` does not end with one of them running
# alone on one worker while the other has nothing left.
LONGEST_QUICK = (
    "tests/nn/test_lanes.py",
    "tests/tracking/test_registry.py",
    "tests/tracking/test_store.py",
    "tests/explorer/test_malformed_requests.py",
)


def wholly_slow(path: Path) -> bool:
    """Whether the test module at `path` marks every test of its own slow at its top level
    (`pytestmark = pytest.mark.slow`), read without importing it."""
    source = path.read_text()
    if "pytestmark = pytest.mark.slow" not in source:
        return False
    return any(
        isinstance(node, ast.Assign)
        and [ast.unparse(target) for target in node.targets] == ["pytestmark"]
        and ast.unparse(node.value) == "pytest.mark.slow"
        for node in ast.parse(source).body
    )


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """Under `-m "not slow"` (`make test-fast`), a module marked slow as a whole is not imported,
    nor what it imports (MLflow, most of them): it holds no test that would run."""
    quick_only = config.option.markexpr.strip() == "not slow"
    is_test_module = collection_path.suffix == ".py" and collection_path.name.startswith("test_")
    return True if quick_only and is_test_module and wholly_slow(collection_path) else None


# First: xdist's worker reads the xdist_group marks in its own hook (it tags each test's ID with
# its group), and the conftest is registered before that plugin, so would otherwise run after.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    where = {item: Path(str(item.fspath)).relative_to(REPO).as_posix() for item in items}
    for item in items:
        for prefix, group in XDIST_GROUPS.items():
            if where[item].startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))

    # Longest first, so that no long test is left to run alone at the end while the other
    # worker idles: the server's and the timing tests' groups (minutes each, on one worker),
    # then the longest slow tests, the other slow ones, the longest quick ones, and the rest.
    # A stable sort: pytest-randomly's shuffle stays within each. xdist keeps this order with
    # --no-loadscope-reorder (the Makefile); by default it puts the groups of most tests first.
    # A worker holds up to three tests queued: ending on quick ones, both end within seconds.
    def cost_rank(item) -> int:
        group = item.get_closest_marker("xdist_group")
        if group is not None and group.args in (("server",), ("timing",)):
            return 0
        if item.get_closest_marker("slow"):
            return 1 if where[item] in LONGEST_SLOW else 2
        return 3 if where[item] in LONGEST_QUICK else 4

    items.sort(key=cost_rank)


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    """Collection imports the project and its libraries (MLflow, Hydra, numpy, …): with the
    collector off while it does, and what it imported frozen after, neither the imports nor
    the tests' own collections walk those objects again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def pytest_unconfigure(config) -> None:
    """A worker ends as the stage commands do (pipeline/plumbing/process.py): without the
    interpreter's last collections over all it imported, which took seconds on a Zen 3. At
    once, not in an exit handler as `skip_last_collection` does: measured that way, pytest's
    main process still ended 9.5 s after the workers' last test, against 0.8 s."""
    gc.freeze()


FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def synthetic_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """28×28 uint8 images: a bright 20-pixel bar at a row chosen by the label, noise elsewhere,
    and the example's index in pixels 0 and 1 (little-endian base 256)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    images[np.arange(n), 2 + 2 * labels.astype(np.int64), 4:24] = 255
    index = np.arange(n)
    images[:, 0, 0] = index % 256
    images[:, 0, 1] = index // 256
    return images


def example_index(images: np.ndarray) -> np.ndarray:
    """Recover the index written by `synthetic_images` from normalised (÷255) images."""
    pixels = np.rint(images[:, :2] * 255).astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


@dataclass
class SyntheticMnist:
    directory: Path
    files: DataFiles
    train_labels: np.ndarray
    test_labels: np.ndarray


def write_synthetic_mnist(directory: Path, n_train: int = 300, n_test: int = 100) -> SyntheticMnist:
    """Write the four IDX files; return them with their SHA-256 as a `DataFiles` spec."""
    directory.mkdir(parents=True, exist_ok=True)
    train_labels = (np.arange(n_train) % 10).astype(np.uint8)
    test_labels = ((np.arange(n_test) * 7) % 10).astype(np.uint8)
    arrays = {
        "train_images": synthetic_images(train_labels, seed=1),
        "train_labels": train_labels,
        "test_images": synthetic_images(test_labels, seed=2),
        "test_labels": test_labels,
    }
    specs = {}
    for role, array in arrays.items():
        path = directory / FILE_NAMES[role]
        write_idx(path, array)
        specs[role] = FileSpec(FILE_NAMES[role], hashlib.sha256(path.read_bytes()).hexdigest())
    return SyntheticMnist(directory, DataFiles(**specs), train_labels, test_labels)


@pytest.fixture
def synthetic_mnist(tmp_path: Path) -> SyntheticMnist:
    return write_synthetic_mnist(tmp_path / "mnist-source")


def session_folder(tmp_path_factory) -> Path:
    """The session's temporary folder, shared by its xdist workers (above each one's own)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder `build(folder)` fills once per session, whichever xdist worker asks first; the
    others wait for it and then read it. Tests only read it (or copy it)."""
    from filelock import FileLock

    root = session_folder(tmp_path_factory)
    folder, done = root / name, root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def template_key() -> str:
    """What an empty migrated store depends on: the versions of MLflow, SQLAlchemy and Alembic,
    and the folder it is made in (its Default experiment's artifacts go to ./mlruns there)."""
    made_by = [version(name) for name in ("mlflow", "sqlalchemy", "alembic")]
    return hashlib.sha256("\n".join([*made_by, os.getcwd()]).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory, pytestconfig) -> Path:
    """A migrated, empty MLflow SQLite store, made once per session, or copied from pytest's
    cache, where the last one made with the same `template_key` is kept (a migration takes
    seconds, and leaves one worker waiting on the other)."""

    def migrate(folder: Path) -> None:
        cache = getattr(pytestconfig, "cache", None)  # None under `-p no:cacheprovider`
        kept = cache.mkdir("mlflow-template") / f"{template_key()}.db" if cache else None
        if kept is not None:
            with contextlib.suppress(FileNotFoundError):  # none yet, or another session's gone
                shutil.copy(kept, folder / "mlflow.db")
                return
        import mlflow

        mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        if kept is not None:
            for stale in kept.parent.glob("*.db"):
                stale.unlink(missing_ok=True)
            staged = kept.with_name(f".{kept.name}.{os.getpid()}.tmp")
            shutil.copy(folder / "mlflow.db", staged)
            os.replace(staged, kept)  # a session killed meanwhile leaves no half a store

    return built_once(tmp_path_factory, "mlflow-template", migrate) / "mlflow.db"


@pytest.fixture(scope="session", autouse=True)
def session_store(mlflow_template, tmp_path_factory):
    """Everything the tests run, in process or not, logs to a throwaway store by default."""
    path = tmp_path_factory.mktemp("mlflow-session") / "mlflow.db"
    shutil.copy(mlflow_template, path)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{path}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def mlflow_uri_kept():
    """`mlflow.set_tracking_uri` (which the pipeline's commands call, in process too) sets a
    process-wide URI and $MLFLOW_TRACKING_URI: each test leaves both as it found them, so the
    next one logs where its own fixtures say."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)  # back to "unset": the variable decides again
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@contextlib.contextmanager
def environment_kept():
    """Put the whole environment back after the block, and MLflow's process-wide tracking URI
    to "unset". That comes first: unsetting it deletes $MLFLOW_TRACKING_URI too."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None:
            mlflow.set_tracking_uri(None)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def mlflow_store(mlflow_template, tmp_path, monkeypatch) -> str:
    """A fresh store of this test's own, made the tracking URI; returns the URI."""
    path = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def free_port() -> int:
    """A local TCP port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, what: str, timeout: float) -> None:
    """Wait until `url` answers (a server a test started); fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not come up within {timeout:.0f} s")


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: this venv's tools first on PATH, no telemetry."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.pop("DVC_EXP_NAME", None)
    return env


def run(
    args: list[str], cwd: Path, check: bool = True, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run a command, capturing output; on an unexpected failure show what it printed.
    `unset` names environment variables the command must not see."""
    env = {key: value for key, value in tool_env().items() if key not in unset}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def run_main(main, argv: list[str], capsys, check: bool = True) -> subprocess.CompletedProcess:
    """A command's `main(argv)` in this process, with its exit code and what it printed (as
    `run`, failing on an unexpected exit code): what `python -m` runs, without a second
    interpreter importing MLflow again (seconds). For the commands that act on this repository
    (its conf/ and code) and a store the test names."""
    capsys.readouterr()
    code = main(argv)
    printed = capsys.readouterr()
    if check and code != 0:
        raise AssertionError(f"main({argv}) returned {code}\n{printed.out}\n{printed.err}")
    return subprocess.CompletedProcess(argv, code, printed.out, printed.err)


def sigterm_after(args: list[str], cwd: Path, marker: str, timeout: float = 60) -> tuple[int, str]:
    """Start `args`, send SIGTERM once `marker` shows on its stderr; return the exit status and
    everything it wrote to stderr."""
    process = subprocess.Popen(args, cwd=cwd, env=tool_env(), stderr=subprocess.PIPE, text=True)
    try:
        seen, deadline = "", time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            char = process.stderr.read(1)
            if not char:  # it ended before printing the marker
                break
            seen += char
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, seen + rest


PROJECT_FILES = ["pipeline", "hydra_plugins", "conf", "dvc.yaml", ".dvc/config", ".dvcignore",
                 ".gitignore", "reports/mlflow_run.json"]  # fmt: skip


def copy_project(target: Path) -> Path:
    """Copy the project's code and config (no data, no venv) into a fresh git repository. The
    code's compiled bytecode comes too (git ignores it): valid, as the copies keep the sources'
    times, so that no copy's first stages compile the package again."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    run(["git", "init", "-q", "-b", "main"], target)
    run(["git", "config", "user.name", "Test"], target)
    run(["git", "config", "user.email", "test@example.invalid"], target)
    return target


def split_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    """Normalised synthetic examples, as the split and normalise stages store them."""
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = synthetic_images(labels, seed).reshape(n, -1) / np.float32(255)
    return {"images": images.astype(np.float32), "labels": labels}


def project_with_data(target: Path) -> Path:
    """A project copy whose split and test data exist already (no DVC run needed)."""
    from pipeline.plumbing.files import save_arrays

    project = copy_project(target)
    save_arrays(project / "data" / "split" / "train.npz", **split_arrays(300, 1))
    save_arrays(project / "data" / "split" / "dev.npz", **split_arrays(60, 2))
    save_arrays(project / "data" / "normalised" / "test.npz", **split_arrays(80, 3))
    return project


# Small, quick training for tests: a bar one row off is another class, so no shifts.
QUICK = ["model.hidden=[16]", "train.epochs=2", "train.max_shift=0"]


# The DVC project the pipeline, experiment and reproduce tests share.
ALL_STAGES = ["check_params", "fetch", "normalise", "split", "train", "evaluate"]


def dvc(args: list[str], project: Path, check: bool = True):
    """`dvc …` with the default store: the session's MLFLOW_TRACKING_URI is hidden."""
    return run(["dvc", *args], project, check=check, unset=("MLFLOW_TRACKING_URI",))


def project_client(project: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def run_reproduce(project: Path, run_id: str):
    """`python -m pipeline.reproduce RUN_ID` in `project`, on its own store."""
    args = [sys.executable, "-m", "pipeline.reproduce", run_id]
    return run(args, project, check=False, unset=("MLFLOW_TRACKING_URI",))


def assert_identical(project: Path, run_id: str):
    """Reproduce `run_id` and check the verdict is identical everywhere; return the result."""
    result = run_reproduce(project, run_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reproduce: identical: all" in result.stdout
    assert "weights sha256" in result.stdout and "test/accuracy" in result.stdout
    client = project_client(project)
    (rerun,) = client.search_runs(["1"], f"tags.reproduces = '{run_id}'")
    assert rerun.info.status == "FINISHED"
    assert rerun.data.tags["reproduce.verdict"] == "identical"
    original = client.get_run(run_id)
    assert original.data.tags["reproduce.verdict"] == "identical"
    assert original.data.tags["reproduce.by"] == rerun.info.run_id
    assert rerun.data.metrics["test/accuracy"] == original.data.metrics["test/accuracy"]
    # The temporary worktree is gone again.
    assert len(run(["git", "worktree", "list"], project).stdout.splitlines()) == 1
    return result


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, mlflow_template) -> Path:
    """A copy of the project whose data group points at synthetic files, reproduced once per
    session for all workers (tests read it, or work on copies: `copy_reproduced`)."""
    folder = built_once(
        tmp_path_factory, "dvc", lambda root: reproduce_synthetic(root, mlflow_template)
    )
    return folder / "project"


def reproduce_synthetic(root: Path, mlflow_template: Path) -> None:
    source = write_synthetic_mnist(root / "source")
    project = copy_project(root / "project")
    files = "\n".join(
        f"  {role}:\n    name: {spec.name}\n    sha256: {spec.sha256}"
        for role, spec in vars(source.files).items()
    )
    (project / "conf" / "data" / "synthetic.yaml").write_text(
        f"name: synthetic\nsources:\n  - dir:{source.directory}\nfiles:\n{files}\n"
    )
    config = project / "conf" / "config.yaml"
    text = config.read_text().replace("- data: mnist", "- data: synthetic")
    text = text.replace("dev_size: 10000", "dev_size: 60").replace("epochs: 20", "epochs: 3")
    # The synthetic classes differ by a bar's row, which a one-pixel shift would blur.
    text = text.replace("max_shift: 1", "max_shift: 0")
    config.write_text(text)
    model = project / "conf" / "model" / "mlp.yaml"
    model.write_text(model.read_text().replace("hidden: [512, 512]", "hidden: [32]"))
    run([sys.executable, "-m", "pipeline.params", "compose"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "synthetic project"], project)
    shutil.copy(mlflow_template, project / "mlflow.db")  # git-ignored, like the real one
    first = dvc(["repro"], project)
    assert ran_stages(first.stdout) == ALL_STAGES
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "reproduced"], project)


def move_store(database: Path, old_root: Path, new_root: Path) -> None:
    """Point the absolute artifact paths an MLflow SQLite store records at a moved project."""
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            for column in connection.execute(f"PRAGMA table_info('{table}')").fetchall():
                name, kind = column[1], column[2].upper()
                if kind.startswith(("VARCHAR", "TEXT")):
                    connection.execute(
                        f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?)',
                        (str(old_root), str(new_root)),
                    )


def copy_reproduced(reproduced: Path, tmp_path: Path) -> Path:
    """A copy of the reproduced project (git repo, DVC cache, outputs, MLflow store and
    artifacts) of a test's own."""
    copy = Path(shutil.copytree(reproduced, tmp_path / "project", symlinks=True))
    move_store(copy / "mlflow.db", reproduced, copy)
    return copy


class Progress:
    """The progress bars a process prints to its piped `stream` (tqdm's, one line per epoch,
    each ended by a carriage return), read as they come, so that a test can act once a
    training reaches an epoch: a count of epochs holds on any CPU and disk, where a count of
    checkpoint writes follows the disk (checkpoints.COST_SHARE spaces them)."""

    def __init__(self, process: subprocess.Popen, stream) -> None:
        self.process, self.stream = process, stream
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""

    def epochs(self, label: str) -> int:
        """The most epochs done that the bar `label` ("train", or a sweep job's "trial N")
        has shown so far."""
        shown = re.findall(rf"{re.escape(label)}: *\d+%\|[^|]*\| *(\d+)/\d+", self.text)
        return max(map(int, shown), default=0)

    def wait_for(self, epochs: dict[str, int], limit: float = 300) -> None:
        """Read until each bar has shown its number of epochs done; the process must still be
        running then."""
        deadline = time.monotonic() + limit
        while any(self.epochs(label) < n for label, n in epochs.items()):
            assert time.monotonic() < deadline, f"not there in {limit} s: {self.text[-2000:]}"
            assert self.read(), f"it ended before {epochs}: {self.text[-3000:]}"
        assert self.process.poll() is None, f"it ended at {epochs}: {self.text[-3000:]}"

    def read(self) -> bool:
        """Add what came within a second; False once the stream has ended."""
        ready, _, _ = select.select([self.stream], [], [], 1)
        chunk = os.read(self.stream.fileno(), 65536) if ready else b""
        self.text += self.decoder.decode(chunk, final=bool(ready) and not chunk)
        return not ready or bool(chunk)

    def rest(self, limit: float = 120) -> str:
        """All it printed to the stream, once the stream has ended and the process with it."""
        deadline = time.monotonic() + limit
        while self.read():
            assert time.monotonic() < deadline, f"it printed on for {limit} s: {self.text[-2000:]}"
        self.process.wait(timeout=limit)
        return self.text
