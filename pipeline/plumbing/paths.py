"""Every path the pipeline reads or writes, in one place; mirrors the outs of dvc.yaml.

A test (tests/plumbing/test_paths.py) checks that each stage's outputs here are exactly the
outs and metrics of that stage in dvc.yaml. Sweep jobs write the train and evaluate outputs
under their own job folder instead of the project root: `TrainOutputs.under(job_dir)`.
"""

from __future__ import annotations

import os
from dataclasses import astuple, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project: pipeline/plumbing/paths.py → ../..
CONF_DIR = ROOT / "conf"
PARAMS = ROOT / "params.yaml"

RAW_DIR = ROOT / "data" / "raw"  # fetch: the four IDX files
NORMALISED_TRAIN = ROOT / "data" / "normalised" / "train.npz"  # normalise
NORMALISED_TEST = ROOT / "data" / "normalised" / "test.npz"  # normalise
DATA_STATS = ROOT / "reports" / "data_stats.json"  # normalise (metrics)
SPLIT_TRAIN = ROOT / "data" / "split" / "train.npz"  # split
SPLIT_DEV = ROOT / "data" / "split" / "dev.npz"  # split


@dataclass(frozen=True)
class TrainOutputs:
    model: Path  # weights and architecture, no pickle
    history: Path  # one row per epoch (DVC plots)
    metrics: Path  # final, best and kept-model scores (DVC metrics)

    @classmethod
    def under(cls, root: Path) -> TrainOutputs:
        return cls(
            root / "models" / "model.npz",
            root / "reports" / "train_history.csv",
            root / "reports" / "train_metrics.json",
        )


FIGURE_NAMES = ("confusion_matrix", "training_curves", "misclassified")  # PNGs of evaluate


@dataclass(frozen=True)
class EvaluateOutputs:
    confusion: Path  # one `actual,predicted` row per test image (DVC confusion plot)
    figures: Path  # a folder of PNGs
    metrics: Path  # test accuracy, loss, per-class scores (DVC metrics)

    @classmethod
    def under(cls, root: Path) -> EvaluateOutputs:
        reports = root / "reports"
        return cls(reports / "confusion.csv", reports / "figures", reports / "test_metrics.json")

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def figure_files(self) -> list[Path]:
        return [self.figure(name) for name in FIGURE_NAMES]


TRAIN = TrainOutputs.under(ROOT)
# train: a model whose MLflow run could not be completed, by run id (git-ignored, not DVC's)
UNPUBLISHED = Path("models") / "unpublished"
# train: the state after the last epoch of an unfinished training (git-ignored, not DVC's:
# DVC would delete it before the stage runs), to resume from; gone once the outputs are out.
CHECKPOINT = Path("models") / "checkpoints" / "train.npz"
EVALUATE = EvaluateOutputs.under(ROOT)
# Inside `dvc exp run` only, train names its MLflow run here, so that `dvc exp show` lists
# each experiment's run (a top-level metrics file of dvc.yaml, git-tracked, no stage's output:
# a run id is local to one store, so `dvc repro` leaves the committed file alone).
EXPERIMENT_RUN = ROOT / "reports" / "mlflow_run.json"

# What each stage of dvc.yaml writes (outs and metrics), in the order dvc.yaml lists them.
STAGE_OUTPUTS: dict[str, tuple[Path, ...]] = {
    "fetch": (RAW_DIR,),
    "normalise": (NORMALISED_TRAIN, NORMALISED_TEST, DATA_STATS),
    "split": (SPLIT_TRAIN, SPLIT_DEV),
    "train": astuple(TRAIN),
    "evaluate": astuple(EVALUATE),
}


def project_root() -> Path:
    """The real project root: $DVC_ROOT inside a queued `dvc exp run`, which executes in a
    copy under .dvc/tmp/exps/ that must still log to the project's own MLflow store."""
    return Path(os.environ.get("DVC_ROOT") or ROOT).resolve()


def mlflow_database() -> Path:
    """The default MLflow store (git-ignored): runs, metrics, params, the model registry."""
    return project_root() / "mlflow.db"


def mlflow_artifacts() -> Path:
    """Where the default store keeps artifacts (git-ignored)."""
    return project_root() / "mlruns"
