"""Serving: the network as an MLflow pyfunc model. Imports only the numpy core (and mlflow,
numpy, pandas), because it is shipped with the logged model."""
