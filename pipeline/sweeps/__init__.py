"""Optuna sweeps as a Hydra sweeper: a study on RDB storage, workers that each ask for the
next trial as soon as theirs ends, pruning through the trial, and the MLflow parent run."""
