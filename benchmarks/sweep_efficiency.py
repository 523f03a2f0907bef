"""Sweep efficiency: what pruning and asking without a batch barrier buy (`make bench` part 6).

On one search space with bad regions (Adam's learning rate over four decades, one hidden layer
of 16 to 1,024 units), one sampler and one seed, in a scratch copy of the project with fewer
training rows and epochs (tracking off). The sampler is random by default: its proposals do not
depend on the results, so both studies try the same kind of trials and what differs is the
pruning; TPE (--sampler tpe) adapts to what pruning reports, and so takes another path.

  A. the project's sweeper, 2 workers, no pruning;
  B. the same with the pruner (--pruner, default successive_halving);
  C. Hydra's batch launching, run here with the same trainer: ask 2 trials, train both in 2
     worker processes, wait for the slower, tell, ask again (what Hydra's Optuna sweeper does);
  D. study B with 1 worker, twice: it must be the same study both times.

Prints for each: trials, epochs trained, wall time, best dev accuracy, and worker utilisation
(the trials' busy time ÷ (their span × workers)); then the targets of issue 31.

    python benchmarks/sweep_efficiency.py [--trials 32] [--epochs 9] [--pruner median]
                                          [--sampler tpe] [--keep]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline.plumbing.compute import wanted_env  # noqa: E402

# Every process here computes as the sweeper pins its jobs: Haswell kernels on one thread each.
os.environ.update(wanted_env("Haswell", 1, "X86_V3"))
os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", PIPELINE_PARALLEL_JOBS="2")

import numpy as np  # noqa: E402  (after the pins: OpenBLAS reads them when it loads)

SPACE = [
    "optimizer.lr=tag(log, interval(0.0001, 1.0))",
    "model.hidden=choice([16],[64],[256],[1024])",
]
FIXED = [
    "train.max_shift=0",
    "train.dropout=0.1",
    "train.checkpoint=false",
    "tracking.enabled=false",
]
ROWS = {"train": 10_000, "dev": 2_000, "test": 2_000}
DATA = {"train": "data/split/train.npz", "dev": "data/split/dev.npz",
        "test": "data/normalised/test.npz"}  # fmt: skip


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32, help="trials in each study")
    parser.add_argument("--epochs", type=int, default=9, help="epochs of an unpruned trial")
    parser.add_argument("--pruner", default="successive_halving", help="hydra/sweeper/pruner")
    parser.add_argument("--sampler", default="random", help="hydra/sweeper/sampler")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser.parse_args()


def scratch_project(folder: Path) -> str:
    """The code and config, and the first rows of the project's data (random pixels of the
    same shapes if `make repro` has not made it)."""
    for name in ("pipeline", "conf", "hydra_plugins", "params.yaml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, folder / name)
    real = all((ROOT / path).is_file() for path in DATA.values())
    rng = np.random.default_rng(0)
    for role, path in DATA.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        if real:
            with np.load(ROOT / path) as arrays:
                images, labels = arrays["images"][: ROWS[role]], arrays["labels"][: ROWS[role]]
        else:
            images = rng.random((ROWS[role], 784), dtype=np.float32)
            labels = rng.integers(0, 10, ROWS[role]).astype(np.uint8)
        np.savez(folder / path, images=images, labels=labels)
    return "the project's MNIST" if real else "random pixels of MNIST's shapes"


def summary(trials, wall: float, workers: int) -> dict:
    """Epochs trained, the best dev accuracy and the workers' utilisation of `trials`
    (Optuna's FrozenTrials, with their start and end)."""
    ended = [t for t in trials if t.datetime_complete is not None]
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ended)
    span = max(t.datetime_complete for t in ended) - min(t.datetime_start for t in ended)
    values = [t.value for t in ended if t.value is not None and t.state.name == "COMPLETE"]
    return {
        "trials": len(ended), "epochs": sum(len(t.intermediate_values) for t in ended),
        "wall": wall, "best": max(values) if values else float("nan"),
        "utilisation": busy / (span.total_seconds() * workers),
        "pruned": sum(t.state.name == "PRUNED" for t in ended),
        "failed": sum(t.state.name == "FAIL" for t in ended),
    }  # fmt: skip


def sweeper_study(project: Path, name: str, pruner: str, workers: int, args) -> tuple[dict, list]:
    """A study run by the project's sweeper; its summary and its trials."""
    import optuna

    sweep_dir = project / "multirun" / name
    command = [sys.executable, "-m", "pipeline.train", "-m", *SPACE, *FIXED,
               f"train.epochs={args.epochs}", f"hydra/sweeper/sampler={args.sampler}",
               f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.n_trials={args.trials}",
               f"hydra.sweeper.n_jobs={workers}", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: sweep {name} failed:\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    return summary(study.trials, wall, workers), study.trials


_data: dict = {}


def batch_job(params: dict, epochs: int) -> tuple[float | None, int, float, float]:
    """One trial of the batch launcher, in a pool worker: its value (None if it diverged),
    epochs, start and end (epoch seconds)."""
    from pipeline.plumbing.config import compose_conf, validate
    from pipeline.training.trainer import TrainingFailed, train_model

    started = time.time()
    overrides = [*FIXED, f"train.epochs={epochs}", *(f"{k}={v}" for k, v in params.items())]
    config = validate(compose_conf(overrides))
    try:
        _, result = train_model(config, _data["train"], _data["dev"])
    except TrainingFailed:
        return None, 0, started, time.time()
    return result.kept.dev_accuracy, len(result.history), started, time.time()


def batch_study(project: Path, args) -> dict:
    """Hydra's batch launching: ask two, run both, wait for both, tell, again."""
    import optuna

    from pipeline.plumbing.datasets import load_dataset
    from pipeline.sweeps.space import SearchSpace

    os.chdir(project)
    _data.update(train=load_dataset(project / DATA["train"], "split"),
                 dev=load_dataset(project / DATA["dev"], "split"))  # fmt: skip
    space = SearchSpace.parse(SPACE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"tpe": optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
                "random": optuna.samplers.RandomSampler(seed=0)}  # fmt: skip
    sampler = samplers[args.sampler]
    study = optuna.create_study(direction="maximize", sampler=sampler)
    started, epochs = time.perf_counter(), 0
    busy, span = 0.0, 0.0
    with multiprocessing.get_context("fork").Pool(2) as pool:
        while len(study.trials) < args.trials:
            asked = [
                study.ask(space.distributions)
                for _ in range(min(2, args.trials - len(study.trials)))
            ]
            batch = pool.starmap(batch_job, [(trial.params, args.epochs) for trial in asked])
            for trial, (value, trained, start, end) in zip(asked, batch, strict=True):
                study.tell(
                    trial, value, state=None if value is not None else optuna.trial.TrialState.FAIL
                )
                epochs += trained
                busy += end - start
            span += max(end for *_, end in batch) - min(start for *_, start, _ in batch)
    values = [t.value for t in study.trials if t.value is not None]
    return {"trials": len(study.trials), "epochs": epochs, "wall": time.perf_counter() - started,
            "best": max(values), "utilisation": busy / (span * 2), "pruned": 0,
            "failed": sum(t.state.name == "FAIL" for t in study.trials)}  # fmt: skip


def same_study(first: list, second: list) -> bool:
    def key(trial):
        return (trial.number, trial.params, trial.state, trial.intermediate_values, trial.value)

    return [key(t) for t in first] == [key(t) for t in second]


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweeps-"))
    try:
        data = scratch_project(scratch)
        print(f"6. Sweep efficiency: {args.trials} trials of up to {args.epochs} epochs on {data} "
              f"({ROWS['train']:,} training rows, {ROWS['dev']:,} dev), {args.sampler} sampler, "
              f"seed 0, {len(os.sched_getaffinity(0))} usable cores")  # fmt: skip
        print(f"   space: {' '.join(SPACE)}")
        rows = {"A. no pruning, 2 workers": sweeper_study(scratch, "plain", "none", 2, args)[0]}
        pruned_label = f"B. {args.pruner}, 2 workers"
        rows[pruned_label] = sweeper_study(scratch, "pruned", args.pruner, 2, args)[0]
        rows["C. Hydra's batches of 2, no pruning"] = batch_study(scratch, args)
        one, first = sweeper_study(scratch, "one-a", args.pruner, 1, args)
        _, second = sweeper_study(scratch, "one-b", args.pruner, 1, args)
        rows[f"D. {args.pruner}, 1 worker"] = one
        print(f"   {'study':<38}{'trials':>7}{'pruned':>7}{'failed':>7}{'epochs':>7}{'wall s':>8}"
              f"{'best dev':>9}{'busy':>7}")  # fmt: skip
        for label, row in rows.items():
            print(f"   {label:<38}{row['trials']:>7}{row['pruned']:>7}{row['failed']:>7}"
                  f"{row['epochs']:>7}{row['wall']:>8.1f}{row['best']:>9.4f}"
                  f"{row['utilisation']:>7.0%}")  # fmt: skip
        plain, pruned = rows["A. no pruning, 2 workers"], rows[pruned_label]
        batch = rows["C. Hydra's batches of 2, no pruning"]
        epochs, wall = pruned["epochs"] / plain["epochs"], pruned["wall"] / plain["wall"]
        gain = 100 * (pruned["best"] - plain["best"])
        busy = (
            f"utilisation {plain['utilisation']:.0%} (Hydra's batches: {batch['utilisation']:.0%})"
        )
        checks = [
            (f"epochs with pruning {epochs:.0%} of without", epochs <= 0.4, "≤ 40%"),
            (f"wall time with pruning {wall:.0%} of without", wall <= 0.5, "≤ 50%"),
            (f"best dev accuracy {gain:+.2f} pp with pruning", gain >= -0.1, "≥ -0.10 pp"),
            (busy, plain["utilisation"] >= 0.9, "≥ 90%"),
            ("1 worker, run twice: the same trials, pruned epochs and best",
             same_study(first, second), "the same"),
        ]  # fmt: skip
        for said, met, target in checks:
            print(f"   {'met ' if met else 'MISSED'}  {said} (target {target})")
    finally:
        if args.keep:
            print(f"   scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
