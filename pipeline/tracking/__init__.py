"""MLflow at the pipeline's edge: the store, runs that always end settled, their tags, the
logging of trainings and evaluations, the model registry. Imported only when tracking is on:
`import mlflow` costs over a second."""
