"""Configs for the tests, composed from conf/ with Hydra's compose API, each choice of groups
once per test process.

    config("experiment=notes", "train.epochs=30")   # what validate(compose_conf(...)) gives

A composition costs about 70 ms (most of it Hydra reading its own and conf/'s YAML), and the
fast tests ask for about 70 configs, most of them the default groups with a few values changed.
So the groups a config chooses (optimizer=nesterov, experiment=notes) are composed once, and
each value is set on a copy as Hydra's override parser reads it, before the interpolations are
resolved, so that `seed=-1` reaches `${seed}` as it does in Hydra. The tests of composing itself
(tests/plumbing/test_config.py) call compose_conf; test_the_shortcut_composes_what_hydra_composes
(tests/training/test_hyperparameters.py) holds this to what it gives.
"""

from __future__ import annotations

import copy
import functools

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from pipeline.plumbing.config import CONFIG_NAME, validate
from pipeline.plumbing.paths import CONF_DIR
from pipeline.plumbing.schema import Config

GROUPS = {path.name for path in CONF_DIR.iterdir() if path.is_dir()}  # optimizer, schedule, …


@functools.cache
def _composed_groups(groups: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(groups))


def composed(*overrides: str) -> DictConfig:
    """What compose_conf(overrides) gives (a config of its own, resolved), faster."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    for override in parsed:
        if (
            override.is_add()
            or override.is_force_add()
            or override.is_delete()
            or override.is_sweep_override()
        ):
            raise ValueError(f"{override.input_line}: tests/configs.py sets plain values only")
    groups = tuple(o.input_line for o in parsed if o.key_or_group in GROUPS)
    cfg = copy.deepcopy(_composed_groups(groups))
    for override in parsed:
        if override.key_or_group not in GROUPS:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
    OmegaConf.resolve(cfg)
    return cfg


def config(*overrides: str) -> Config:
    """What validate(compose_conf(overrides)) gives, faster."""
    return validate(composed(*overrides))
