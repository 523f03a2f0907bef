"""Hydra multirun sweeps: the MLflow parent run per sweep (a Hydra callback) and the job
each sweep runs (train, then evaluate, into the job's own folder)."""
