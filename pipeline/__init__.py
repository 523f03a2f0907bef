"""From-scratch MNIST pipeline. Imports run one way, down these layers (pyproject.toml's
import-linter contracts, checked by `make lint` and tests/test_layers.py):

    fetch, normalise, split, train, evaluate, params, runs,
    reproduce                                                 entry points, imported by nothing
    sweeps/                                                   Hydra multirun: parent run, job
    data/, training/, evaluation/, tracking/                  the parts the stages compose
    serving/                                                  the served model
    nn/ (the numpy core), plumbing/ (paths, files, errors, config)

This file stays empty of imports: the served model ships it with nn/ and serving/ alone.
"""
