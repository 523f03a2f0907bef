"""What trust costs: `make bench` prints, from one run, where the time of a training goes.

1. Epoch time of the default network (784-512-512-10, Adam, dropout 0.2, shifts, batch 128, on
   20,000 examples) under compute=native_speed (the kernels OpenBLAS picks, on every core) and
   compute=portable_bits (Haswell kernels on one BLAS thread, products shared over the usable
   cores by lanes), their ratio, and the portable weights' hash on every lane count and on one
   core (`taskset`): they must all be equal.
2. The default grid sweep (`make sweep`, conf/sweep/grid.yaml) on a local SQLite store, then
   through the team server (`make server`: PostgreSQL, logins): for each trial, its start-up
   (interpreter and imports, or the sweeper's hand-off), data loading, epochs, scoring of dev
   and test, and each kind of logging, from the phases the job records (plumbing/phases.py);
   the sweeper's warm-up (once a sweep, before it forks its workers) spread over the
   trials, and its own start shown apart.
3. A pipeline training (`python -m pipeline.train`, the default config) with tracking on and
   with tracking.enabled=false.
4. What the training-set distortions cost per epoch (benchmarks/distortions.py).
5. What a checkpoint after every epoch costs, for the default and the 3 × 1024 network
   (benchmarks/checkpoints.py).
6. Sweep efficiency: one search without pruning, with it, and in Hydra's batches of two
   (benchmarks/sweep_efficiency.py).

Everything runs in a scratch copy of the project with MNIST-sized data (this project's own
data/ if `make repro` made it, else random pixels of the same shapes) and scratch stores; the
project's own mlflow.db and outputs are not touched.

    python benchmarks/overheads.py [--skip-server] [--pipeline-epochs 20] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from determinism import child_code  # the same training, timed here per compute preset

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
COPIED = ("pipeline", "conf", "hydra_plugins", "dvc.yaml", "params.yaml", "requirements.lock")
DATA = {"train": "data/split/train.npz", "dev": "data/split/dev.npz",
        "test": "data/normalised/test.npz"}  # fmt: skip
SIZES = {"train": 50_000, "dev": 10_000, "test": 10_000}
LEARNING = ("epochs", "scoring")  # what a trial is for; every other phase is bookkeeping
PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_L2_SIZE")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per compute setting")
    parser.add_argument("--pipeline-epochs", type=int, default=20, help="epochs of part 3")
    parser.add_argument("--skip-server", action="store_true", help="no `make server` part")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--skip-epochs", action="store_true", help="no part 1")
    return parser.parse_args()


def base_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def portable_env() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from pipeline.plumbing.compute import wanted_env

    return {**base_env(), **wanted_env("Haswell", 1, "X86_V3")}


def epoch_time(env: dict, lanes: int, epochs: int, cores: set[int] | None = None) -> dict:
    """determinism.py's training (plus a warm-up epoch) on `lanes`, on the given cores."""
    preexec = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    done = subprocess.run(
        [PYTHON, "-c", child_code(epochs + 1, lanes)], cwd=ROOT, env=env, capture_output=True,
        text=True, preexec_fn=preexec, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {**found, "kernel": f"{found['kernel']} x{found['threads']}"}


def compare_compute(epochs: int) -> None:
    cores = len(os.sched_getaffinity(0))
    print(f"\n1. Epoch of 784-512-512-10 (Adam, dropout 0.2, batch 128, 20,000 examples), {cores} "
          "usable cores; median of the epochs after the first")  # fmt: skip
    native = epoch_time(base_env(), 1, epochs)
    rows = [("native_speed", "BLAS threads: all", native)]
    portable = portable_env()
    for lanes in sorted({1, cores}):
        rows.append(("portable_bits", f"lanes {lanes}", epoch_time(portable, lanes, epochs)))
    if cores > 1:
        one_core = epoch_time(portable, cores, epochs, cores={min(os.sched_getaffinity(0))})
        rows.append(("portable_bits", f"lanes {cores}, one core", one_core))
    print(f"   {'preset':<15}{'sharing':<24}{'kernel':<14}{'s/epoch':>8}{'× native':>10}  weights")
    for preset, sharing, found in rows:
        ratio = found["seconds"] / native["seconds"]
        print(f"   {preset:<15}{sharing:<24}{found['kernel']:<14}{found['seconds']:>8.3f}"
              f"{ratio:>10.2f}  {found['sha256']}")  # fmt: skip
    portable_hashes = {found["sha256"] for preset, _, found in rows if preset == "portable_bits"}
    verdict = "the same bits" if len(portable_hashes) == 1 else "DIFFERENT BITS"
    print(f"   portable_bits on every lane count and on one core: {verdict}")


def scratch_project(folder: Path) -> str:
    """A git repository holding the project's code and MNIST-sized data; returns what data."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, folder / name)
    real = all((ROOT / path).is_file() for path in DATA.values())
    import numpy as np

    rng = np.random.default_rng(0)
    for role, path in DATA.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if real:
            shutil.copy2(ROOT / path, target)
        else:
            images = rng.random((SIZES[role], 784), dtype=np.float32)
            labels = rng.integers(0, 10, SIZES[role]).astype(np.uint8)
            np.savez(target, images=images, labels=labels)
    (folder / ".gitignore").write_text("data/\nmultirun/\n*.db\nmlruns/\nphases*.jsonl\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=bench", "-c",
                 "user.email=bench@example.invalid", "commit", "-qm", "bench"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)
    return "the project's MNIST" if real else "random pixels of MNIST's shapes"


def run_grid(project: Path, name: str, env: dict, uri: str) -> list[dict]:
    phases = project / f"phases-{name}.jsonl"
    args = [PYTHON, "-m", "pipeline.train", "-m", "sweep=grid", f"tracking.uri={uri}",
            f"hydra.sweep.dir={project / 'multirun' / name}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(args, cwd=project, env={**env, "PIPELINE_PHASES": str(phases)},
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: the grid sweep failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in phases.read_text().splitlines()]
    trials = sum(record["kind"] == "sweep-job" for record in records)
    print(f"   {name}: {trials} trials in {wall:.1f} s of wall time (2 jobs at a time)")
    return records


def share_table(columns: dict[str, list[dict]]) -> None:
    """Mean seconds per trial of each phase, side by side, and bookkeeping's share. The warm
    sweeper's warm-up (once per sweep, before it forks its workers: data, tags) is spread
    over the sweep's trials and counted as bookkeeping; its own start-up is shown apart."""
    trials_of = {column: [t for t in records if t["kind"] == "sweep-job"]
                 for column, records in columns.items()}  # fmt: skip
    launchers = {column: [t for t in records if t["kind"] == "sweep-launcher"]
                 for column, records in columns.items()}  # fmt: skip
    names = sorted({n for trials in trials_of.values() for t in trials for n in t["phases"]})
    names = [*LEARNING, *(n for n in names if n not in LEARNING)]
    header = "".join(f"{column:>22}" for column in columns)
    print(f"   {'seconds per trial (mean)':<30}{header}")

    def warm_up(column):
        spent = sum(t["phases"].get("warm-up", 0.0) for t in launchers[column])
        return spent / len(trials_of[column])

    def per_trial(column, pick):
        return statistics.fmean(pick(trial) for trial in trials_of[column])

    rows = [("start-up (process, imports)", lambda c: per_trial(c, lambda t: t["startup"]))]
    rows += [(n, lambda c, n=n: per_trial(c, lambda t: t["phases"].get(n, 0.0))) for n in names]
    rows.append(("other", lambda c: per_trial(c, lambda t: t["job"] - sum(t["phases"].values()))))
    rows.append(("sweeper warm-up / trials", warm_up))
    for label, pick in rows:
        cells = "".join(f"{pick(column):>22.2f}" for column in columns)
        print(f"   {label:<30}{cells}")
    totals, shares, starts = [], [], []
    for column in columns:
        wall = per_trial(column, lambda t: t["startup"] + t["job"]) + warm_up(column)
        learning = per_trial(column, lambda t: sum(t["phases"].get(n, 0.0) for n in LEARNING))
        totals.append(f"{wall:>22.2f}")
        shares.append(f"{(wall - learning) / wall:>22.0%}")
        started = [t["startup"] for t in launchers[column]]
        starts.append(f"{started[0]:>22.2f}" if started else f"{'-':>22}")
    print(f"   {'trial wall time':<30}{''.join(totals)}")
    print(f"   {'not epochs or scoring':<30}{''.join(shares)}")
    print(
        f"   {'once a sweep: sweeper start':<30}{''.join(starts)}  (interpreter, imports, "
        "Hydra, the store and the parent run; before any trial)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_grid(project: Path, scratch: Path, env: dict) -> list[dict] | None:
    folder = scratch / "server"
    folder.mkdir(mode=0o755)
    os.chmod(scratch, 0o755)  # PostgreSQL runs as its own user under root
    server_env = {**env, "PIPELINE_SERVER_DIR": str(folder),
                  "PIPELINE_SERVER_PORT": str(free_port()),
                  "PIPELINE_SERVER_PG_PORT": str(free_port())}  # fmt: skip
    command = [PYTHON, "-m", "pipeline.server"]
    started = subprocess.run([*command, "start"], cwd=ROOT, env=server_env, capture_output=True,
                             text=True)  # fmt: skip
    if started.returncode != 0:
        print(f"   server: could not start ({started.stderr.strip()[-300:]}); skipped")
        return None
    try:
        secrets = dict(line.split("=", 1) for line in (folder / "secrets.env").read_text().split())
        login = {"MLFLOW_TRACKING_USERNAME": "admin",
                 "MLFLOW_TRACKING_PASSWORD": secrets["MLFLOW_AUTH_ADMIN_PASSWORD"]}  # fmt: skip
        uri = f"http://127.0.0.1:{server_env['PIPELINE_SERVER_PORT']}"
        return run_grid(project, "server", {**env, **login}, uri)
    finally:
        subprocess.run([*command, "stop"], cwd=ROOT, env=server_env, capture_output=True)


def pipeline_training(project: Path, env: dict, epochs: int) -> None:
    """Tracking's cost: the tracked training's time outside learning (start-up, data, logging,
    everything but epochs and scoring) less the untracked one's. Comparing whole wall times
    would drown it in the epochs' own noise (±5% from run to run on a shared machine)."""
    print(f"\n3. A pipeline training (python -m pipeline.train, default config, {epochs} epochs)")
    found = {}
    for label, extra in (("tracking on", []), ("tracking off", ["tracking.enabled=false"])):
        phases = project / f"phases-pipeline-{len(found)}.jsonl"
        # The grid's store: created and migrated already, as a project's mlflow.db is after
        # its first run (creating one costs seconds once, not on every training).
        args = [PYTHON, "-m", "pipeline.train", f"train.epochs={epochs}",
                f"tracking.uri=sqlite:///{project / 'b.db'}", *extra]  # fmt: skip
        subprocess.run(args, cwd=project, env={**env, "PIPELINE_PHASES": str(phases)},
                       capture_output=True, check=True)  # fmt: skip
        record = json.loads(phases.read_text().splitlines()[-1])
        wall = record["startup"] + record["job"]
        learning = sum(record["phases"].get(name, 0.0) for name in LEARNING)
        logging = sum(v for k, v in record["phases"].items() if k.startswith("log:"))
        found[label] = (wall, wall - learning)
        print(f"   {label:<14}{wall:>7.1f} s wall: {learning:5.1f} s epochs and scoring, "
              f"{wall - learning:4.1f} s else (logging {logging:.1f} s)")  # fmt: skip
    (wall, tracked_else), (_, untracked_else) = found["tracking on"], found["tracking off"]
    cost = tracked_else - untracked_else
    print(f"   tracking costs {cost:.1f} s: {cost / wall:.1%} of the tracked training's wall time")


def main() -> None:
    args = parse_args()
    if not args.skip_epochs:
        compare_compute(args.epochs)
    scratch = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        project = scratch / "project"
        project.mkdir()
        data = scratch_project(project)
        env = portable_env()  # as a stage would restart itself into: no restart to time
        print(f"\n2. The default grid sweep (conf/sweep/grid.yaml) on {data}")
        columns = {"SQLite": run_grid(project, "sqlite", env, f"sqlite:///{project / 'b.db'}")}
        if not args.skip_server:
            served = server_grid(project, scratch, env)
            if served:
                columns["make server"] = served
        share_table(columns)
        pipeline_training(project, env, args.pipeline_epochs)
        print("\n4. ", end="", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "distortions.py")], check=True)
        print("\n5. ", end="", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "checkpoints.py")], check=True)
        print("\n", end="", flush=True)
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "sweep_efficiency.py")], check=True
        )
    finally:
        if args.keep:
            print(f"\nscratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
