"""Stage `train`: train the from-scratch network on the split data.

Reads `data/split/{train,dev}.npz`, checks every hyperparameter before any work, trains with
a progress bar over the epochs (train loss, dev accuracy), and writes, each atomically:

    models/model.npz               weights and architecture (loads with allow_pickle=False)
    reports/train_metrics.json     final and best train/dev loss and accuracy, epochs, seconds
    reports/train_history.csv      one row per epoch (DVC plots)

A diverging loss stops with an error naming the epoch and learning rate, and no model is
written; so does Ctrl-C or SIGTERM. Run by Hydra multirun (`-m`), each job writes into its own
job folder under multirun/ instead, never into the DVC outputs.

    python -m pipeline.train                               # the default network
    python -m pipeline.train experiment=notes              # the handwritten notes' network
    python -m pipeline.train -m optimizer=sgd,adam model.hidden=[128],[256]
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pipeline.config import ROOT, ConfigError, stage_config
from pipeline.errors import PipelineError, stage_errors
from pipeline.io import load_arrays, save_arrays, write_json, write_text
from pipeline.nn import MLP, fit, make_optimizer, make_schedule
from pipeline.nn.activations import ACTIVATIONS
from pipeline.nn.model import INITS
from pipeline.nn.optim import OPTIMIZERS, SCHEDULES
from pipeline.nn.train import FitResult
from pipeline.schema import Config
from pipeline.split import SPLIT_DIR

NUM_CLASSES = 10
MAX_SHIFT = 4  # pixels; MNIST digits sit in a 20×20 box centred in 28×28, so 4 keeps them whole


@dataclass
class TrainOutputs:
    model: Path
    metrics: Path
    history: Path
    run: Path  # the MLflow run id, for `evaluate` to log into the same run

    @classmethod
    def under(cls, root: Path) -> TrainOutputs:
        return cls(
            root / "models" / "model.npz",
            root / "reports" / "train_metrics.json",
            root / "reports" / "train_history.csv",
            root / "reports" / "mlflow_run.json",
        )


def hyperparameter_problems(config: Config) -> list[str]:
    """Every value that would make training fail or mean nothing, with its dotted key."""
    model, opt, sched, train = config.model, config.optimizer, config.schedule, config.train
    checks = [
        (opt.lr > 0, f"optimizer.lr={opt.lr} must be > 0"),
        (train.epochs >= 1, f"train.epochs={train.epochs} must be ≥ 1"),
        (
            train.batch_size is None or train.batch_size >= 1,
            f"train.batch_size={train.batch_size} must be ≥ 1 (or null for full batch)",
        ),
        (all(h >= 1 for h in model.hidden), f"model.hidden={model.hidden}: sizes must be ≥ 1"),
        (0 <= train.dropout < 1, f"train.dropout={train.dropout} must be in [0, 1)"),
        (
            0 <= train.max_shift <= MAX_SHIFT,
            f"train.max_shift={train.max_shift} must be in [0, {MAX_SHIFT}] pixels",
        ),
        (
            model.activation in ACTIVATIONS,
            f"model.activation={model.activation!r} is not one of {', '.join(ACTIVATIONS)}",
        ),
        (model.init in INITS, f"model.init={model.init!r} is not one of {', '.join(INITS)}"),
        (
            opt.name in OPTIMIZERS,
            f"optimizer.name={opt.name!r} is not one of {', '.join(OPTIMIZERS)}",
        ),
        (
            sched.name in SCHEDULES,
            f"schedule.name={sched.name!r} is not one of {', '.join(SCHEDULES)}",
        ),
        (0 <= opt.momentum < 1, f"optimizer.momentum={opt.momentum} must be in [0, 1)"),
        (0 <= opt.beta1 < 1 and 0 <= opt.beta2 < 1, "optimizer.beta1/beta2 must be in [0, 1)"),
        (opt.weight_decay >= 0, f"optimizer.weight_decay={opt.weight_decay} must be ≥ 0"),
        (train.dtype in ("float32", "float64"), f"train.dtype={train.dtype!r}: float32|float64"),
        (
            train.patience is None or train.patience >= 1,
            f"train.patience={train.patience} must be ≥ 1 (or null for no early stopping)",
        ),
    ]
    return [message for ok, message in checks if not ok]


def check_hyperparameters(config: Config) -> None:
    problems = hyperparameter_problems(config)
    if problems:
        raise ConfigError("; ".join(problems) + " (fix the override or conf/)")


def train_model(
    config: Config,
    train_data: dict[str, np.ndarray],
    dev_data: dict[str, np.ndarray],
    on_epoch=None,
) -> tuple[MLP, FitResult]:
    """Build the network and optimizer `config` describes and train it; no files touched."""
    check_hyperparameters(config)
    dtype = np.dtype(config.train.dtype)
    x_train = train_data["images"].astype(dtype, copy=False)
    x_dev = dev_data["images"].astype(dtype, copy=False)
    rng = np.random.default_rng(config.train.seed)
    sizes = (x_train.shape[1], *config.model.hidden, NUM_CLASSES)
    model = MLP.create(sizes, config.model.activation, config.model.init, rng, dtype)
    opt = config.optimizer
    optimizer = make_optimizer(
        opt.name, model.params(), opt.momentum, opt.nesterov, opt.beta1, opt.beta2, opt.eps,
        opt.weight_decay,
    )  # fmt: skip
    sched = config.schedule
    schedule = make_schedule(
        sched.name, opt.lr, config.train.epochs, sched.step_size, sched.gamma, sched.min_lr
    )
    result = fit(
        model, x_train, train_data["labels"], x_dev, dev_data["labels"],
        optimizer=optimizer, schedule=schedule, epochs=config.train.epochs,
        batch_size=config.train.batch_size, rng=rng, dropout=config.train.dropout,
        max_shift=config.train.max_shift,
        patience=config.train.patience, on_epoch=on_epoch,
    )  # fmt: skip
    return model, result


def train_metrics(result: FitResult, seconds: float) -> dict:
    def scores(record):
        return {
            "train_loss": record.train_loss,
            "train_accuracy": record.train_accuracy,
            "dev_loss": record.dev_loss,
            "dev_accuracy": record.dev_accuracy,
        }

    return {
        "final": scores(result.history[-1]),
        "best": {"epoch": result.best_epoch, **scores(result.best)},
        "model": {"epoch": result.kept.epoch, "dev_accuracy": result.kept.dev_accuracy},
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "train_seconds": round(seconds, 3),
    }


def history_csv(result: FitResult) -> str:
    buffer = io.StringIO()
    columns = ["epoch", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy"]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*columns, "learning_rate"])
    for record in result.history:
        writer.writerow(
            [f"{getattr(record, c):.6g}" for c in columns] + [f"{record.learning_rate:.6g}"]
        )
    return buffer.getvalue()


def run_training(
    config: Config, split_dir: Path, outputs: TrainOutputs, progress=True, on_epoch=None
) -> dict:
    """Load the split data, train, and write model, metrics and history; return the metrics.
    `on_epoch(record)` is called after each epoch (MLflow logs the curves live with it)."""
    check_hyperparameters(config)
    train_data = load_arrays(split_dir / "train.npz", ("images", "labels"), made_by="split")
    dev_data = load_arrays(split_dir / "dev.npz", ("images", "labels"), made_by="split")
    with tqdm(total=config.train.epochs, desc="train", unit="epoch", disable=not progress) as bar:

        def after_epoch(record):
            if on_epoch is not None:
                on_epoch(record)
            bar.set_postfix(loss=f"{record.train_loss:.4f}", dev_acc=f"{record.dev_accuracy:.4f}")
            bar.update(1)

        started = time.perf_counter()
        model, result = train_model(config, train_data, dev_data, after_epoch)
        seconds = time.perf_counter() - started
    metrics = train_metrics(result, seconds)
    save_arrays(outputs.model, **model.to_arrays())
    write_json(outputs.metrics, metrics)
    write_text(outputs.history, history_csv(result))
    return metrics


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def output_root() -> Path:
    """The project root, or the job's own folder when Hydra runs a sweep (multirun)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if in_multirun() else ROOT


def start_run(config: Config, cfg: DictConfig, split_files: dict[str, Path]):
    """Open the store (failing now, before training, if it cannot be used) and start a run."""
    from hydra.core.hydra_config import HydraConfig

    from pipeline.config import DVC_CONFIG_NAME, flatten
    from pipeline.sweep import parent_run_id
    from pipeline.tracking import Run, open_store, run_tags

    experiment_id = open_store(config.tracking)
    name = os.environ.get("DVC_EXP_NAME")
    if in_multirun():
        kind, name = "sweep-job", HydraConfig.get().job.override_dirname or None
    elif HydraConfig.initialized() and HydraConfig.get().job.config_name == DVC_CONFIG_NAME:
        kind = "pipeline"
    else:
        kind = "direct"
    tags = run_tags(kind, config.seed, split_files)
    params = flatten(asdict(config))
    run = Run.start(experiment_id, name, tags, params, parent_id=parent_run_id())
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    return run


def log_training(run, metrics: dict, outputs: TrainOutputs) -> None:
    run.log_metrics(
        {
            "train/seconds": metrics["train_seconds"],
            "best/dev_accuracy": metrics["best"]["dev_accuracy"],
            "best/epoch": metrics["best"]["epoch"],
            "model/dev_accuracy": metrics["model"]["dev_accuracy"],
        }
    )
    run.log_artifact(outputs.metrics, "reports")
    run.log_artifact(outputs.history, "reports")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Train; in a sweep also evaluate. Returns the saved model's dev accuracy (the objective
    Optuna maximises)."""
    from pipeline.sweep import failures_reach_parent
    from pipeline.tracking import settled

    multirun = in_multirun()
    with stage_errors("train", exit_on_error=not multirun), failures_reach_parent(multirun):
        config = stage_config(cfg)
        check_hyperparameters(config)
        outputs = TrainOutputs.under(output_root())
        split_files = {"train": SPLIT_DIR / "train.npz", "dev": SPLIT_DIR / "dev.npz"}
        for path in split_files.values():
            if not path.is_file():
                raise PipelineError(f"{path} is missing: run `dvc repro split` first")
        run = start_run(config, cfg, split_files) if config.tracking.enabled else None
        with settled(run):
            on_epoch = run.log_epoch if run is not None else None
            metrics = run_training(config, SPLIT_DIR, outputs, on_epoch=on_epoch)
            if run is not None:
                log_training(run, metrics, outputs)
            if multirun:
                from pipeline.evaluate import evaluate_sweep_job

                evaluate_sweep_job(run, config, outputs)
            else:
                write_json(outputs.run, {"run_id": run.run_id if run is not None else None})
        best = metrics["best"]
        print(
            f"train: best dev accuracy {best['dev_accuracy']:.4f} at epoch {best['epoch']} of "
            f"{metrics['epochs_run']}, {metrics['train_seconds']:.1f} s; model in {outputs.model}"
        )
        return metrics["model"]["dev_accuracy"]


if __name__ == "__main__":
    main()
