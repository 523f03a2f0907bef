"""The file MLflow runs to rebuild the pyfunc model ("models from code"): no pickled object.

Logged by pipeline/tracking/registry.py together with the code it imports (pipeline/nn and
pipeline/serving), so it imports wherever the model is loaded.
"""

import mlflow

from pipeline.serving.pyfunc import DigitClassifier

mlflow.models.set_model(DigitClassifier())
