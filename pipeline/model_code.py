"""The file MLflow runs to rebuild the pyfunc model ("models from code"): no pickled object.

Logged by `pipeline.tracking.log_pyfunc_model` with the `pipeline` package as code_paths, so it
imports wherever the model is loaded.
"""

import mlflow

from pipeline.serving import DigitClassifier

mlflow.models.set_model(DigitClassifier())
