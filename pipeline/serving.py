"""The trained network as an MLflow pyfunc model: load it from any directory, or serve it.

    model = mlflow.pyfunc.load_model("models:/mnist-mlp@pipeline")
    model.predict(images)    # N×784 float32 pixels in [0, 1] -> DataFrame: digit, p0 … p9

    mlflow models serve -m models:/mnist-mlp@pipeline --env-manager local -p 5001
    curl -d '{"inputs": [[0.0, …784 values…]]}' -H 'Content-Type: application/json' \
        127.0.0.1:5001/invocations

The model's files are the weights (`model.npz`, no pickle) and this package's code, logged with
`code_paths` so that `pipeline` imports wherever the model is loaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipeline.config import ROOT
from pipeline.nn.model import MLP


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


# MLflow hints at type hints when the class is defined; the logged model has a signature.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class DigitClassifier(mlflow.pyfunc.PythonModel):
        """pyfunc wrapper around `MLP`; its weights are the artifact named "weights"."""

        def load_context(self, context):
            weights = context.artifacts["weights"]
            with np.load(weights, allow_pickle=False) as arrays:
                self.network = MLP.from_arrays(arrays, source=weights)

        def predict(self, context, model_input, params=None):
            return predictions_frame(self.network, as_images(model_input, self.network.sizes[0]))


def log_pyfunc_model(run, weights: Path, example, register: str | None, alias: str) -> None:
    """Log the network as a pyfunc model in `run`; register it and move `alias` if asked."""
    from mlflow.models import infer_signature

    with np.load(weights, allow_pickle=False) as arrays:
        network = MLP.from_arrays(arrays, source=str(weights))
    with mlflow.start_run(run_id=run.run_id), warnings.catch_warnings():
        # Hints aimed at models without a signature or with missing values: neither applies.
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, predictions_frame(network, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ROOT / "pipeline" / "model_code.py"),  # models from code, no pickle
            artifacts={"weights": str(weights)},
            code_paths=[str(ROOT / "pipeline")],
            signature=signature,
            input_example=example,
            registered_model_name=register,
            # Listed, not inferred: inference loads the model in a subprocess and takes seconds.
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"],
        )
        if register:
            version = info.registered_model_version
            run.client.set_registered_model_alias(register, alias, version)
            run.set_tags({"registered_model": f"{register} v{version} @{alias}"})
    run.client.update_run(run.run_id, status="RUNNING")  # start_run's exit set FINISHED
