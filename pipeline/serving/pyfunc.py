"""The trained network as an MLflow pyfunc model: load it from any directory, or serve it.

    model = mlflow.pyfunc.load_model("models:/mnist-mlp@pipeline")
    model.predict(images)    # N×784 float32 pixels in [0, 1] -> DataFrame: digit, p0 … p9

    mlflow models serve -m models:/mnist-mlp@pipeline --env-manager local -p 5001
    curl -d '{"inputs": [[0.0, …784 values…]]}' -H 'Content-Type: application/json' \
        127.0.0.1:5001/invocations
    curl --data-binary @images.csv -H 'Content-Type: text/csv' 127.0.0.1:5001/invocations
                             # CSV: a header line (names), then one image of 784 values a row

The logged model holds the weights (`model.npz`, no pickle), model_code.py and the code it
imports: this module and the numpy core (pipeline/nn), nothing else of the project. So it
needs only what its requirements declare (mlflow, numpy, pandas); pipeline/tracking/registry.py
logs it.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.nn import MLP
from pipeline.serving.weights import load_network


class BadImages(MlflowException):
    """Input that is not images the network can score; the scoring server answers HTTP 400."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def as_images(model_input, pixels: int) -> np.ndarray:
    """Rows of `pixels` float32 values in [0, 1] from an array, list or DataFrame; a request
    with anything else is refused naming the first bad row and the fix."""
    if isinstance(model_input, pd.DataFrame):
        check_header(model_input.columns)
    try:
        images = np.asarray(model_input, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise BadImages(
            f"cannot read the input as numbers ({error}); send rows of {pixels} pixel values"
        ) from None
    if images.ndim == 1:
        images = images.reshape(1, -1)
    if images.ndim != 2 or images.shape[1] != pixels:
        raise BadImages(
            f"expected images as rows of {pixels} pixel values (N×{pixels}), got shape "
            f"{images.shape}; flatten each 28×28 image and scale pixels to [0, 1]"
        )
    for problem, bad, fix in (
        ("a missing, NaN or infinite pixel", ~np.isfinite(images), "send numbers only"),
        (
            "a pixel outside [0, 1]",
            (images < 0) | (images > 1),
            "scale pixels to [0, 1] (divide 0-255 values by 255)",
        ),
    ):
        rows = np.flatnonzero(bad.any(axis=1))
        if len(rows):
            column = int(np.flatnonzero(bad[rows[0]])[0])
            raise BadImages(
                f"row {rows[0]} (of {len(images)}) has {problem} (pixel {column}: "
                f"{images[rows[0], column]}); {len(rows)} row(s) in all: {fix}"
            )
    return images


def check_header(columns) -> None:
    """CSV is read with its first line as column names: refuse a first line of pixel values
    (a CSV without a header), whose image would otherwise be lost without a word."""
    for name in map(str, columns):
        try:
            value = float(name)
        except ValueError:
            if name.count(".") > 1:  # a repeated value, renamed "0.0.1" by pandas
                break
            continue
        if not value.is_integer():
            break
    else:
        return
    raise BadImages(
        f"the first CSV line holds pixel values ({str(columns[0])!r}, ...), not column names: "
        "start the CSV with a header line, as DataFrame.to_csv(index=False) writes"
    )


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
        self.network = load_network(
            context.artifacts["weights"],
            fix="log the model again (`python -m pipeline.runs promote RUN_ID` logs a run's "
            "model from its weights)",
        )

    def predict(self, context, model_input, params=None):
        return predictions_frame(self.network, as_images(model_input, self.network.sizes[0]))
