"""The config tree: params.yaml agrees with conf/, the schema rejects bad keys and types with
the dotted key named, and a bad override on the command line gets one clear line."""

from __future__ import annotations

import sys

import pytest
from omegaconf import OmegaConf

from pipeline.config import (
    PARAMS_PATH,
    ConfigError,
    check_params_fresh,
    compose_conf,
    flatten,
    params_drift,
    validate,
    write_params,
)
from tests.conftest import REPO, run


def test_committed_params_yaml_is_the_composition_of_conf(tmp_path):
    fresh = tmp_path / "params.yaml"
    write_params(fresh)
    assert PARAMS_PATH.read_text() == fresh.read_text(), "params.yaml is stale: run `make params`"
    check_params_fresh(OmegaConf.load(PARAMS_PATH))


def test_compose_applies_overrides_and_resolves_the_shared_seed():
    config = validate(compose_conf(["seed=5", "split.dev_size=1000"]))
    assert config.split.dev_size == 1000
    assert config.split.seed == 5  # ${seed}
    assert config.data.files.train_images.name == "train-images-idx3-ubyte"


def test_an_unknown_key_is_named():
    cfg = OmegaConf.to_container(compose_conf())
    cfg["split"]["dev_sise"] = 5
    with pytest.raises(ConfigError, match=r"invalid config at split\.dev_sise: Key 'dev_sise'"):
        validate(cfg)


def test_a_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"invalid config at split\.dev_size: Value 'abc'"):
        validate(compose_conf(["split.dev_size=abc"]))


def test_a_missing_key_is_named():
    cfg = OmegaConf.to_container(compose_conf())
    del cfg["split"]["seed"]
    with pytest.raises(ConfigError, match=r"config is missing split\.seed"):
        validate(cfg)


def test_drift_names_each_differing_key_and_the_fix():
    composed = compose_conf()
    stale = OmegaConf.to_container(composed)
    stale["split"]["dev_size"] = 1234
    del stale["seed"]
    assert params_drift(stale, composed) == [
        "seed (params.yaml: '<absent>', conf/: 0)",
        "split.dev_size (params.yaml: 1234, conf/: 10000)",
    ]
    with pytest.raises(ConfigError, match=r"split\.dev_size .*run `make params`"):
        check_params_fresh(stale, composed)


def test_flatten_gives_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": {},
    }


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("split.dev_size=abc", "split: error: invalid config at split.dev_size"),
        ("+split.dev_sise=5", "split: error: invalid config at split.dev_sise"),
        ("split.dev_sise=5", "Could not override 'split.dev_sise'"),  # Hydra's own message
    ],
)
def test_bad_override_on_the_command_line_is_one_clear_message(tmp_path, override, expected):
    result = run(
        [sys.executable, "-m", "pipeline.split", override, f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
