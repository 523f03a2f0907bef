"""Checkpoints: a training stopped at any epoch (Ctrl-C, SIGTERM, SIGKILL, a power cut) goes on
from its last finished epoch and ends with the same bits as if it had never stopped.

    keeper = Checkpoints(root / CHECKPOINT, fingerprint(config, data_files))
    keeper.load()                  # the saved state if it is the same training, else None
    train_model(config, train, dev, keeper=keeper)    # restores it, saves after every epoch
    keeper.remove()                # once the outputs are in place

After every epoch the whole state (pipeline/nn/state.py) is written to the checkpoint file
atomically: a temporary file beside it, fsync, rename, so a SIGKILL mid-write leaves the
previous checkpoint whole. It is resumed only if it was made under the same training: the
train stage's code, the split data (DVC's md5), the config that decides the bits (the
stage's params in dvc.yaml) and what computes them (numpy, the BLAS, and the CPU unless
every setting is pinned); otherwise one line says which of them changed, the checkpoint is
removed and training starts from epoch 1. The checkpoint also carries the MLflow run it logs
to and when each epoch's curves were stamped, so the resumed training continues that run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.nn.fitting import EpochRecord
from pipeline.nn.serialization import READ_ERRORS, damage_reason
from pipeline.nn.state import StateMismatch, restore_training_state, training_state
from pipeline.plumbing.compute import in_force
from pipeline.plumbing.config import flatten
from pipeline.plumbing.errors import PipelineError, interrupts_deferred, os_reason
from pipeline.plumbing.files import file_md5
from pipeline.plumbing.paths import ROOT
from pipeline.plumbing.publish import atomic_path, shown
from pipeline.plumbing.schema import Config

TRAIN_CODE = ("pipeline/train.py", "pipeline/training", "pipeline/nn")  # the stage's code deps
BITS_COMPUTE = ("blas_kernel", "blas_threads", "numpy_max_simd")  # compute params that decide
NOT_THE_TRAINING = ("train.checkpoint", "train.resume")  # how it is kept, not what it trains
COST_SHARE = 0.02  # of the training's time, at most, spent writing checkpoints


def code_digests(root: Path = ROOT) -> dict[str, str]:
    """SHA-256 of each Python file of the train stage's code, by its path in the project."""
    files = []
    for dep in TRAIN_CODE:
        path = root / dep
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
    }


def training_params(config: Config) -> dict:
    """The params that decide a training's bits, flattened: as the train stage in dvc.yaml."""
    groups = {name: asdict(getattr(config, name)) for name in ("model", "optimizer", "schedule")}
    groups["train"] = asdict(config.train)
    groups["compute"] = {key: getattr(config.compute, key) for key in BITS_COMPUTE}
    flat = flatten(groups)
    return {key: value for key, value in flat.items() if key not in NOT_THE_TRAINING}


def computing(config: Config) -> dict[str, str]:
    """What computes, read back from the libraries (numpy's and the BLAS's versions, kernel,
    threads, SIMD level); the CPU too unless every bit-deciding setting is pinned, as under
    portable_bits, whose bits are the same on any AVX2 CPU."""
    record = in_force(config.compute.name)
    record.pop("compute.preset")
    if all(getattr(config.compute, key) is not None for key in BITS_COMPUTE):
        record.pop("compute.cpu")
    return record


def fingerprint(config: Config, data_files: dict[str, Path], root: Path = ROOT) -> dict:
    """What makes two trainings the same: code, data, the params that decide the bits, and
    what computes them."""
    return {
        "code": code_digests(root),
        "data": {role: file_md5(path) for role, path in data_files.items()},
        "config": training_params(config),
        "compute": computing(config),
    }


def what_changed(saved: dict, now: dict) -> str:
    """The first difference between two fingerprints, in words."""
    for key in sorted(set(saved.get("config", {})) | set(now["config"])):
        before, after = saved.get("config", {}).get(key), now["config"].get(key)
        if before != after:
            return f"{key} changed ({before} → {after})"
    for key in sorted(set(saved.get("compute", {})) | set(now["compute"])):
        before, after = saved.get("compute", {}).get(key), now["compute"].get(key)
        if before != after:
            return f"{key} changed ({before} → {after})"
    for role in sorted(set(saved.get("data", {})) | set(now["data"])):
        if saved.get("data", {}).get(role) != now["data"].get(role):
            return f"the {role} data changed"
    changed = [f for f in sorted(set(saved.get("code", {})) | set(now["code"]))
               if saved.get("code", {}).get(f) != now["code"].get(f)]  # fmt: skip
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"the training code changed ({changed[0]}{more})"
    return ""


class Checkpoints:
    """The checkpoint of one training: loaded if it is the same training, saved every epoch."""

    def __init__(self, path: Path, made_under: dict, saving: bool = True, say=None):
        self.path = path
        self.made_under = made_under  # the fingerprint of this training
        self.saving = saving  # train.checkpoint: save after every epoch
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.arrays: dict[str, np.ndarray] | None = None  # the loaded state, to restore
        self.context: dict = {}  # run id, stamps, resumed_at, seconds: carried along
        self.stamps: dict[int, int] = {}  # epoch → when its curves were stamped (ms)
        self.saved_epoch = 0  # the last epoch the file on disk holds
        self.records: list[EpochRecord] = []  # the loaded checkpoint's history

    def load(self, resume: bool = True) -> bool:
        """Read the checkpoint if there is one and it may be resumed; say why not otherwise
        (and remove it). True if the training goes on from it."""
        if not self.path.is_file():
            return False
        where = shown(self.path)
        if not resume:
            self.say(f"train: train.resume=false: starting from epoch 1; removed {where}")
            self.remove()
            return False
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            meta = json.loads(bytes(arrays["meta"]).decode())
            records = [EpochRecord(**record) for record in meta["history"]]
            context = meta["context"]
            saved_under, epoch = context["made_under"], int(context["epoch"])
        except (*READ_ERRORS, TypeError) as error:  # JSON and UTF-8 errors are ValueErrors
            reason = damage_reason(error)
            self.say(f"train: the checkpoint {where} is damaged ({reason}): starting from epoch 1")
            self.remove()
            return False
        changed = what_changed(saved_under, self.made_under)
        if changed:
            self.say(
                f"train: starting from epoch 1, not from the checkpoint of epoch {epoch} "
                f"({where}): {changed}; it is removed"
            )
            self.remove()
            return False
        self.arrays, self.context, self.records = arrays, context, records
        self.stamps = {int(k): int(v) for k, v in context.get("stamps", {}).items()}
        self.saved_epoch = epoch
        return True

    @property
    def epoch(self) -> int:
        return self.saved_epoch

    def sendable(self) -> int | None:
        """The last epoch whose curves may be sent now (LiveCurves): the checkpoint's, while
        checkpoints are written; None (any) otherwise."""
        return self.saved_epoch if self.saving else None

    def restore(self, model, optimizer, rng):
        """Put the loaded state into freshly built parts; the fit's result so far, or None."""
        if self.arrays is None:
            return None
        try:
            result, _ = restore_training_state(self.arrays, model, optimizer, rng)
        except StateMismatch as error:
            raise PipelineError(
                f"the checkpoint {shown(self.path)} does not fit this network ({error}): remove "
                "it, or train with train.resume=false"
            ) from None
        self.arrays = None  # its copies now live in the model and optimizer
        return result

    def saver(self, model, optimizer, rng, session_started: float, epochs: int):
        """The `on_checkpoint` for `fit`: the state after each epoch of `epochs`, written whole
        (skipped while the last write's time is over COST_SHARE of the time since it, so that
        epochs of milliseconds do not spend most of it writing; the last epoch is always
        written); None with train.checkpoint=false."""
        if not self.saving:
            return None
        seconds_before = float(self.context.get("seconds", 0.0))
        last = {"ended": 0.0, "took": 0.0}  # the last write: when it ended, how long it took

        def save(result) -> None:
            epoch = len(result.history)
            self.stamps.setdefault(epoch, int(time.time() * 1000))
            since = time.perf_counter() - last["ended"]
            final = epoch >= epochs or result.stopped_early
            if not final and last["took"] > COST_SHARE * since:
                return
            self.context.update(
                made_under=self.made_under,
                epoch=epoch,
                stamps={str(k): v for k, v in self.stamps.items()},
                seconds=seconds_before + time.perf_counter() - session_started,
            )
            if not self.saving:  # a write failed before: the training goes on without
                return
            started = time.perf_counter()
            arrays = training_state(model, optimizer, rng, result, self.context)
            try:
                # Ctrl-C waits for the write: the file and `saved_epoch` then agree.
                with interrupts_deferred("the checkpoint was written"):
                    with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
                        np.savez(handle, **arrays)
                    self.saved_epoch = epoch
            except PipelineError as error:
                cause = error.__cause__
                reason = os_reason(cause) if isinstance(cause, OSError) else str(error)
                self.say(
                    f"train: warning: cannot write the checkpoint {shown(self.path)}: {reason}; "
                    "training goes on without one"
                )
                self.saving, self.saved_epoch = False, 0
                self.remove()  # an older one would resume a training that went further
                return
            last.update(ended=time.perf_counter(), took=time.perf_counter() - started)

        return save

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder too, once it holds nothing else
            self.path.parent.rmdir()
