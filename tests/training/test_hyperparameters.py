"""Range checks of every training field: each bad value named with its key, all at once."""

from __future__ import annotations

import copy
import functools
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from pipeline.plumbing.config import CONFIG_NAME, ConfigError, compose_conf, validate
from pipeline.plumbing.paths import CONF_DIR
from pipeline.training.hyperparameters import check_hyperparameters, hyperparameter_problems

GROUPS = {path.name for path in CONF_DIR.iterdir() if path.is_dir()}  # optimizer, schedule, …


@functools.cache
def composed(groups: tuple[str, ...]):
    """conf/ with `groups` chosen, its interpolations kept: composed once per choice."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(groups))


def config_with(*overrides):
    """What `validate(compose_conf(overrides))` gives, faster: the group choices composed once,
    then each value, as Hydra's parser reads it, set on a copy before the interpolations are
    resolved, so that `seed=-1` reaches `${seed}` as in Hydra
    (test_the_shortcut_composes_what_hydra_composes holds it to that)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = tuple(o.input_line for o in parsed if o.key_or_group in GROUPS)
    cfg = copy.deepcopy(composed(groups))
    for override in parsed:
        if override.key_or_group not in GROUPS:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
    OmegaConf.resolve(cfg)
    return validate(cfg)


@pytest.mark.parametrize(
    "overrides",
    [["seed=7", "optimizer=nesterov", "optimizer.lr=0.5", "model.hidden=[8,4]"],
     ["schedule=step", "schedule.gamma=0.25", "train.dtype=float64", "train.patience=3"],
     ["experiment=notes", "train.epochs=2"]],
)  # fmt: skip
def test_the_shortcut_composes_what_hydra_composes(overrides):
    assert config_with(*overrides) == validate(compose_conf(overrides))


EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize(
    "preset",
    [[], ["optimizer=nesterov"], ["optimizer=adamw", "schedule=step"]]
    + [[f"experiment={name}"] for name in EXPERIMENTS],
)
def test_the_shipped_presets_pass(preset):
    assert hyperparameter_problems(config_with(*preset)) == []


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
        check_hyperparameters(config_with(*overrides))


def test_every_problem_is_reported_at_once():
    problems = hyperparameter_problems(config_with("optimizer.lr=0", "train.epochs=0", "seed=-2"))
    keys = [problem.split("=")[0] for problem in problems]
    assert keys == ["seed", "optimizer.lr", "train.epochs", "train.seed"]  # train.seed: ${seed}
