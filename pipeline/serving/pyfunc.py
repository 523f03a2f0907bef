"""The trained network as an MLflow pyfunc model: load it from any directory, or serve it.

    model = mlflow.pyfunc.load_model("models:/mnist-mlp@pipeline")
    model.predict(images)    # N×784 float32 pixels in [0, 1] -> DataFrame: digit, p0 … p9

    mlflow models serve -m models:/mnist-mlp@pipeline --env-manager local -p 5001
    curl -d '{"inputs": [[0.0, …784 values…]]}' -H 'Content-Type: application/json' \
        127.0.0.1:5001/invocations

The logged model holds the weights (`model.npz`, no pickle), model_code.py and the code it
imports: this module and the numpy core (pipeline/nn), nothing else of the project. So it
needs only what its requirements declare (mlflow, numpy, pandas); pipeline/tracking/registry.py
logs it.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipeline.nn import MLP, model_from_arrays


def as_images(model_input, pixels: int) -> np.ndarray:
    """Rows of `pixels` float32 values from an array, list or DataFrame; a clear error if not."""
    images = np.asarray(model_input, dtype=np.float32)
    if images.ndim == 1:
        images = images.reshape(1, -1)
    if images.ndim != 2 or images.shape[1] != pixels:
        raise ValueError(
            f"expected images as rows of {pixels} pixel values (N×{pixels}), got shape "
            f"{images.shape}; flatten each 28×28 image and scale pixels to [0, 1]"
        )
    return images


def predictions_frame(network: MLP, images: np.ndarray) -> pd.DataFrame:
    """The predicted digit and the probability of each digit, one row per image."""
    probabilities = network.probabilities(images)
    frame = pd.DataFrame(
        probabilities, columns=[f"p{digit}" for digit in range(probabilities.shape[1])]
    )
    frame.insert(0, "digit", probabilities.argmax(axis=1))
    return frame


class DigitClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around `MLP`; its weights are the artifact named "weights"."""

    # The logged model carries an explicit signature. Without this flag MLflow wraps `predict`
    # for type-hint validation and warns, on every import, that it has no type hints.
    _skip_type_hint_validation = True

    def load_context(self, context):
        weights = context.artifacts["weights"]
        with np.load(weights, allow_pickle=False) as arrays:
            self.network = model_from_arrays(arrays, source=weights)

    def predict(self, context, model_input, params=None):
        return predictions_frame(self.network, as_images(model_input, self.network.sizes[0]))
