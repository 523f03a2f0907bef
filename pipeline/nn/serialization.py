"""A network as plain named arrays, for `np.savez` and `np.load(allow_pickle=False)`.

    {"architecture": JSON {"format": "pipeline.mlp/1", "sizes": [...], "activation": "relu"},
     "W1": ..., "b1": ..., "W2": ..., ...}

Loading checks every array's shape against the recorded sizes, so an edited or foreign file
raises `ModelFormatError` naming what is wrong, never a shape error deep in a matmul.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from itertools import pairwise

import numpy as np

from pipeline.nn.activations import ACTIVATIONS
from pipeline.nn.model import MLP

FORMAT = "pipeline.mlp/1"


# What np.load and reading an .npz's arrays raise for a damaged file (cut short, emptied,
# bytes changed, another format under the name).
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def damage_reason(error: BaseException) -> str:
    """A few words for why an .npz could not be read, for a one-line message: never numpy's
    advice to load a file that is not an archive with allow_pickle=True."""
    text = str(error).strip().split("\n")[0]
    if "pickle" in text or "not a zip" in text:
        return "not a whole .npz archive: cut short, or another format"
    if "CRC" in text or isinstance(error, zlib.error):
        return "its bytes changed since it was written"
    if isinstance(error, EOFError) or "truncated" in text or "negative seek" in text:
        return "cut short"
    return text[:200] or type(error).__name__


class ModelFormatError(ValueError):
    """The arrays are not a network saved by `model_to_arrays`, or disagree with its sizes."""


def model_to_arrays(model: MLP) -> dict[str, np.ndarray]:
    """Weights and architecture as plain arrays (np.savez-able, no pickle)."""
    architecture = {"format": FORMAT, "sizes": list(model.sizes), "activation": model.activation}
    arrays = {"architecture": np.array(json.dumps(architecture))}
    for layer, (w, b) in enumerate(zip(model.weights, model.biases, strict=True), start=1):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = w, b
    return arrays


def model_from_arrays(arrays, source: str = "model") -> MLP:
    """Rebuild a network from `model_to_arrays` output; `source` names it in errors."""
    try:
        architecture = json.loads(str(arrays["architecture"]))
        sizes, activation = tuple(architecture["sizes"]), architecture["activation"]
        if architecture.get("format") != FORMAT:
            raise ValueError("unknown format")
    except (KeyError, ValueError, TypeError):
        raise ModelFormatError(
            f"{source} is not a model saved by this project (no valid architecture record)"
        ) from None
    if activation not in ACTIVATIONS:
        raise ModelFormatError(f"{source}: unknown activation {activation!r}")
    weights, biases = [], []
    for layer, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
        for name, shape, into in [
            (f"W{layer}", (fan_out, fan_in), weights),
            (f"b{layer}", (fan_out, 1), biases),
        ]:
            if name not in arrays:
                raise ModelFormatError(f"{source} lacks {name} for sizes {list(sizes)}")
            array = np.asarray(arrays[name])
            if array.shape != shape:
                raise ModelFormatError(
                    f"{source}: {name} has shape {array.shape} but sizes {list(sizes)} need "
                    f"{shape}; the file is corrupt or was edited"
                )
            into.append(array)
    return MLP(sizes, activation, weights, biases)
