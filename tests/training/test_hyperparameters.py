"""Range checks of every training field: each bad value named with its key, all at once."""

from __future__ import annotations

import re

import pytest

from pipeline.plumbing.config import ConfigError, compose_conf, validate
from pipeline.plumbing.paths import CONF_DIR
from pipeline.training.hyperparameters import check_hyperparameters, hyperparameter_problems
from tests.configs import config


@pytest.mark.parametrize(
    "overrides",
    [["seed=7", "optimizer=nesterov", "optimizer.lr=0.5", "model.hidden=[8,4]"],
     ["schedule=step", "schedule.gamma=0.25", "train.dtype=float64", "train.patience=3"],
     ["experiment=notes", "train.epochs=2"],
     ["compute=native_speed", "train.batch_size=null", "compute.blas_kernel='Has well'",
      "tracking.uri=sqlite:///some/where/mlflow.db"]],
)  # fmt: skip
def test_the_shortcut_composes_what_hydra_composes(overrides):
    """tests/configs.py: the groups composed once and the values set after, as Hydra would."""
    assert config(*overrides) == validate(compose_conf(overrides))


def test_the_shortcut_refuses_what_it_cannot_do_as_hydra_would():
    for override in ("+train.extra=1", "++seed=3", "~train.patience", "seed=1,2"):
        with pytest.raises(ValueError, match="plain values only"):
            config(override)


EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize(
    "preset",
    [[], ["optimizer=nesterov"], ["optimizer=adamw", "schedule=step"]]
    + [[f"experiment={name}"] for name in EXPERIMENTS],
)
def test_the_shipped_presets_pass(preset):
    assert hyperparameter_problems(config(*preset)) == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["seed=-1"], "seed=-1 must be ≥ 0"),
        (["train.seed=-3"], "train.seed=-3 must be ≥ 0"),
        (["model.hidden=[32,0]"], "model.hidden=[32, 0]: sizes must be ≥ 1"),
        (["model.activation=swish"], "model.activation='swish' is not one of"),
        (["model.init=zeros"], "model.init='zeros' is not one of"),
        (["optimizer.name=rmsprop"], "optimizer.name='rmsprop' is not one of"),
        (["optimizer.lr=0"], "optimizer.lr=0.0 must be > 0"),
        (["optimizer.lr=-1"], "optimizer.lr=-1.0 must be > 0"),
        (["optimizer.lr=nan"], "must be finite numbers"),
        (["optimizer.momentum=1"], "optimizer.momentum=1.0 must be in [0, 1)"),
        (["optimizer=gd", "optimizer.nesterov=true"], "nesterov=true needs optimizer.momentum"),
        (["optimizer.beta1=1"], "optimizer.beta1=1.0 must be in [0, 1)"),
        (["optimizer.beta2=-0.1"], "optimizer.beta2=-0.1 must be in [0, 1)"),
        (["optimizer.eps=0"], "optimizer.eps=0.0 must be > 0"),
        (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1 must be ≥ 0"),
        (["schedule.name=linear"], "schedule.name='linear' is not one of"),
        (["schedule.step_size=0"], "schedule.step_size=0 must be ≥ 1"),
        (["schedule.gamma=0"], "schedule.gamma=0.0 must be in (0, 1]"),
        (["schedule.gamma=1.5"], "schedule.gamma=1.5 must be in (0, 1]"),
        (["schedule.min_lr=-0.1"], "schedule.min_lr=-0.1 must be in [0, optimizer.lr=0.001]"),
        (["schedule.min_lr=0.01"], "schedule.min_lr=0.01 must be in [0, optimizer.lr=0.001]"),
        (["train.epochs=0"], "train.epochs=0 must be ≥ 1"),
        (["train.batch_size=0"], "train.batch_size=0 must be ≥ 1"),
        (["train.dropout=1.0"], "train.dropout=1.0 must be in [0, 1)"),
        (["train.dropout=-0.1"], "train.dropout=-0.1 must be in [0, 1)"),
        (["train.input_dropout=1.0"], "train.input_dropout=1.0 must be in [0, 1)"),
        (["train.max_norm=0"], "train.max_norm=0.0 must be > 0 (or null for no cap)"),
        (["train.distortion.scale=1.5"], "train.distortion.scale=1.5 must be in [0, 1)"),
        (["train.distortion.elastic_sigma=0"], "train.distortion.elastic_sigma=0.0 > 0"),
        (["train.max_shift=5"], "train.max_shift=5 must be in [0, 4] pixels"),
        (["train.patience=0"], "train.patience=0 must be ≥ 1"),
        (["train.stop_after=0"], "train.stop_after=0 must be in [1, train.epochs]"),
        (
            ["train.epochs=3", "train.stop_after=4"],
            "train.stop_after=4 must be in [1, train.epochs]",
        ),
        (
            ["train.include_dev=true", "train.patience=3"],
            "train.patience=3 stops on dev accuracy, which train.include_dev=true scores on "
            "images it trained on: set train.patience=null",
        ),
        (["train.dtype=float16"], "train.dtype='float16' is not one of float32, float64"),
    ],
)
def test_each_bad_value_is_named_with_its_key(overrides, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        check_hyperparameters(config(*overrides))


def test_every_problem_is_reported_at_once():
    problems = hyperparameter_problems(config("optimizer.lr=0", "train.epochs=0", "seed=-2"))
    keys = [problem.split("=")[0] for problem in problems]
    assert keys == ["seed", "optimizer.lr", "train.epochs", "train.seed"]  # train.seed: ${seed}
