"""A training's whole state as plain named arrays, to stop it after any epoch and go on later
with the same bits as if it had never stopped:

    arrays = training_state(model, optimizer, rng, result, context)   # after an epoch
    result, context = restore_training_state(arrays, model, optimizer, rng)
    fit(model, ..., optimizer=optimizer, rng=rng, result=result)      # goes on from there

It holds the parameters, the optimizer's buffers and step count, the random generator's
bit-generator state, the history so far, the best epoch and, under patience, its weights.
What the caller adds (`context`: where it was made, its MLflow run) rides along as JSON. No
I/O here: the arrays are saved without pickle by whoever keeps them (pipeline/training).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from pipeline.nn.fitting import EpochRecord, FitResult
from pipeline.nn.model import MLP
from pipeline.nn.optimizers import Optimizer

META = "meta"  # the JSON of the scalars: step count, generator state, history, context


class StateMismatch(ValueError):
    """Saved state that does not fit the network or optimizer it is loaded into."""


def training_state(
    model: MLP,
    optimizer: Optimizer,
    rng: np.random.Generator,
    result: FitResult,
    context: dict | None = None,
) -> dict[str, np.ndarray]:
    """Copies of everything `fit` carries from one epoch to the next, as named arrays."""
    arrays = {f"param.{i}": param.copy() for i, param in enumerate(model.params())}
    for i, buffers in enumerate(optimizer.state):
        for j, buffer in enumerate(buffers):
            arrays[f"optimizer.{i}.{j}"] = buffer.copy()
    for i, param in enumerate(result.best_params or []):
        arrays[f"best.{i}"] = param.copy()
    meta = {
        "steps": optimizer.steps,
        "rng": rng.bit_generator.state,
        "history": [asdict(record) for record in result.history],
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "has_best_params": result.best_params is not None,
        "context": context or {},
    }
    # Python writes each float as its shortest repr, which reads back to the same bits.
    arrays[META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def restore_training_state(
    arrays: dict[str, np.ndarray], model: MLP, optimizer: Optimizer, rng: np.random.Generator
) -> tuple[FitResult, dict]:
    """Put saved state back into a freshly built `model`, `optimizer` and `rng` (in place);
    return the fit's result so far and the caller's context. `StateMismatch` if it does not
    fit them."""
    try:
        meta = json.loads(bytes(arrays[META]).decode())
        saved = [arrays[f"param.{i}"] for i in range(len(model.params()))]
        buffers = [
            [arrays[f"optimizer.{i}.{j}"] for j in range(len(state))]
            for i, state in enumerate(optimizer.state)
        ]
        best = None
        if meta["has_best_params"]:
            best = [arrays[f"best.{i}"] for i in range(len(saved))]
        history = [EpochRecord(**record) for record in meta["history"]]
    except (KeyError, TypeError, ValueError) as error:
        raise StateMismatch(f"saved state lacks or misreads {error}") from None
    targets = [*model.params(), *(b for state in optimizer.state for b in state)]
    sources = [*saved, *(b for state in buffers for b in state)]
    for target, source in zip(targets, sources, strict=True):
        if target.shape != source.shape or target.dtype != source.dtype:
            raise StateMismatch(
                f"saved {source.dtype} {source.shape} where the network has "
                f"{target.dtype} {target.shape}"
            )
    for target, source in zip(targets, sources, strict=True):  # all checked: now copy
        target[...] = source
    optimizer.steps = int(meta["steps"])
    try:
        rng.bit_generator.state = meta["rng"]
    except (TypeError, ValueError, KeyError) as error:
        raise StateMismatch(f"the random generator's state does not fit: {error}") from None
    result = FitResult(
        history=history,
        best_epoch=int(meta["best_epoch"]),
        stopped_early=bool(meta["stopped_early"]),
        best_params=[np.array(param) for param in best] if best is not None else None,
    )
    return result, meta["context"]
