"""The config tree: params.yaml agrees with conf/, and the schema rejects bad keys and types
with the dotted key named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.plumbing import config
from pipeline.plumbing.config import (
    ConfigError,
    check_params_fresh,
    compose_conf,
    flatten,
    freshness_digest,
    params_drift,
    validate,
    write_params,
)
from pipeline.plumbing.paths import CONF_DIR, PARAMS
from tests import configs


def test_committed_params_yaml_is_the_composition_of_conf(tmp_path):
    fresh = tmp_path / "params.yaml"
    write_params(fresh)
    assert PARAMS.read_text() == fresh.read_text(), "params.yaml is stale: run `make params`"
    check_params_fresh(OmegaConf.load(PARAMS))


def test_compose_applies_overrides_and_resolves_the_shared_seed():
    config = validate(compose_conf(["seed=5", "split.dev_size=1000"]))
    assert config.split.dev_size == 1000
    assert config.split.seed == 5  # ${seed}
    assert config.data.files.train_images.name == "train-images-idx3-ubyte"


def test_an_unknown_key_is_named():
    cfg = OmegaConf.to_container(configs.composed())
    cfg["split"]["dev_sise"] = 5
    with pytest.raises(ConfigError, match=r"invalid config at split\.dev_sise: Key 'dev_sise'"):
        validate(cfg)


def test_a_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"invalid config at split\.dev_size: Value 'abc'"):
        validate(compose_conf(["split.dev_size=abc"]))


def test_a_missing_key_is_named():
    cfg = OmegaConf.to_container(configs.composed())
    del cfg["split"]["seed"]
    with pytest.raises(ConfigError, match=r"config is missing split\.seed"):
        validate(cfg)


def test_drift_names_each_differing_key_and_the_fix():
    composed = configs.composed()
    stale = OmegaConf.to_container(composed)
    stale["split"]["dev_size"] = 1234
    del stale["seed"]
    assert params_drift(stale, composed) == [
        "seed (params.yaml: '<absent>', conf/: 0)",
        "split.dev_size (params.yaml: 1234, conf/: 10000)",
    ]
    with pytest.raises(ConfigError, match=r"split\.dev_size .*run `make params`"):
        check_params_fresh(stale, composed)


def test_a_fresh_verdict_is_kept_until_conf_or_the_params_change(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    stamp = tmp_path / ".dvc" / "tmp" / "params-fresh"
    params = OmegaConf.load(PARAMS)
    check_params_fresh(params, stamp=stamp)
    assert stamp.read_text() == freshness_digest(params)
    with monkeypatch.context() as patched:  # kept: conf/ is not composed again
        patched.setattr(config, "compose_conf", lambda: pytest.fail("composed again"))
        check_params_fresh(params, stamp=stamp)
    stale = OmegaConf.to_container(params)
    stale["split"]["dev_size"] = 1234
    with pytest.raises(ConfigError, match=r"split\.dev_size \(params.yaml: 1234, conf/: 10000"):
        check_params_fresh(stale, stamp=stamp)
    # Outside a DVC project (no .dvc/), nothing is kept.
    elsewhere = tmp_path / "elsewhere" / ".dvc" / "tmp" / "params-fresh"
    check_params_fresh(params, stamp=elsewhere)
    assert not (tmp_path / "elsewhere").exists()
    # A file of conf/ edited, params.yaml as it was: composed again, and stale.
    conf = Path(shutil.copytree(CONF_DIR, tmp_path / "conf"))
    text = (conf / "config.yaml").read_text()
    (conf / "config.yaml").write_text(text.replace("dev_size: 10000", "dev_size: 9999"))
    monkeypatch.setattr(config, "CONF_DIR", conf)
    with pytest.raises(ConfigError, match=r"split\.dev_size \(params.yaml: 10000, conf/: 9999"):
        check_params_fresh(params, stamp=stamp)


def test_flatten_gives_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": {},
    }
