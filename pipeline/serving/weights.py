"""The one reader of a saved network (`models/model.npz`, a logged model's weights).

Every part that loads a network reads it here: the evaluate stage, sweep jobs, the registry,
`reproduce`, the served pyfunc model. A file that cannot be a network, whatever the damage
(missing, empty, cut short, bytes changed, another format under the name), is one line naming
the file and how to make it again; numpy's own advice for a file that is not an archive
(allow_pickle=True) never reaches a user, and nothing is unpickled.

    network = load_network(Path("models/model.npz"), fix="rebuild it with `dvc repro -f train`")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.nn import MLP, ModelFormatError, model_from_arrays
from pipeline.nn.serialization import READ_ERRORS, damage_reason


class WeightsError(ValueError):
    """A saved network that cannot be read; the message is one line with the fix."""


def load_network(path: str | Path, fix: str) -> MLP:
    """The network saved at `path`, every array read and checked against its architecture;
    `WeightsError` ("<path> is damaged (<why>): <fix>") if it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} is missing: {fix}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array under the name
            raise ValueError("not an .npz archive")
        with loaded as arrays:
            return model_from_arrays(arrays, source=str(path))
    except ModelFormatError as error:
        raise WeightsError(f"{str(error).splitlines()[0]}: {fix}") from None
    except READ_ERRORS as error:
        raise WeightsError(f"{path} is damaged ({damage_reason(error)}): {fix}") from None
