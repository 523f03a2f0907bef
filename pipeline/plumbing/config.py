"""The config tree: compose conf/ into params.yaml, validate it, and catch a stale params.yaml.

conf/ is the single source of truth. params.yaml is its composition: `dvc exp run` rewrites it
(with `-S` overrides applied) before each experiment, but `dvc repro` just reads it, so an edit
to conf/ without a refresh would run silently on old values. Every stage run by DVC therefore
compares params.yaml with a fresh composition of conf/ and stops, naming `make params`, when the
two disagree (inside `dvc exp run`, which has just composed it, the comparison is skipped).
Composing takes a quarter of a second, so a verdict of fresh is kept in .dvc/tmp/params-fresh
under a digest of what decides it (every file of conf/, the params' values, Hydra's and
OmegaConf's versions): the stages after `check_params` find it there.

The commands are in pipeline/params.py:

    python -m pipeline.params compose   # rewrite params.yaml from conf/ (`make params`)
    python -m pipeline.params check     # exit 1 if params.yaml is stale (`make check-params`)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import hydra
import omegaconf
import yaml
from dvc.utils.hydra import compose_and_dump
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import atomic_path, write_text
from pipeline.plumbing.paths import CONF_DIR, PARAMS, ROOT
from pipeline.plumbing.schema import Config

CONFIG_NAME = "config"
# The primary config that `dvc.yaml`'s commands name: params.yaml, as DVC composed it.
DVC_CONFIG_NAME = "from_params"
REFRESH = "run `make params` (python -m pipeline.params compose) to recompose it from conf/"
FRESH_STAMP = ROOT / ".dvc" / "tmp" / "params-fresh"  # the digest params.yaml was fresh at


class ConfigError(PipelineError):
    """The config is invalid or params.yaml is out of date."""


PARAMS_FIX = (
    "compose it again with `make params` (python -m pipeline.params compose), or take the "
    "committed one back with `git checkout params.yaml`"
)


def load_params(path: Path = PARAMS) -> DictConfig:
    """params.yaml as a config; a `PipelineError` naming the file and the fix if it is not a
    YAML mapping (cut short, emptied, bytes changed, another format under the name)."""
    if not path.is_file():
        raise PipelineError(f"{path.name} is missing: {PARAMS_FIX}")
    try:
        text = path.read_bytes().decode("utf-8")
        if not text.strip():
            raise ValueError("empty")
        loaded = OmegaConf.create(yaml.safe_load(text))
    except (UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error) else type(error).__name__
        raise PipelineError(f"{path.name} is damaged ({reason}): {PARAMS_FIX}") from None
    if not isinstance(loaded, DictConfig):
        raise PipelineError(f"{path.name} is damaged (not a YAML mapping): {PARAMS_FIX}")
    return loaded


def params_readable(stage: str) -> None:
    """Before Hydra reads params.yaml (a stage run with `--config-name from_params`, as DVC
    runs them): end with one line if it cannot be read, rather than Hydra's stack trace."""
    if "from_params" not in sys.argv:
        return
    try:
        load_params()
    except PipelineError as error:
        print(f"{stage}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def compose_conf(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose conf/ (as `dvc exp run` does) and resolve interpolations."""
    if GlobalHydra.instance().is_initialized():
        # Inside a running @hydra.main app, whose search path already holds conf/.
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def write_params(path: Path = PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Write the composition of conf/ to params.yaml with DVC's own function, byte for byte
    what `dvc exp run` would write."""
    with atomic_path(path) as tmp:
        tmp_yaml = tmp.with_suffix(".yaml")  # compose_and_dump picks its format by suffix
        try:
            compose_and_dump(tmp_yaml, str(CONF_DIR), None, CONFIG_NAME, str(ROOT), list(overrides))
            tmp_yaml.replace(tmp)
        finally:
            tmp_yaml.unlink(missing_ok=True)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: {"split": {"seed": 0}} -> {"split.seed": 0}."""
    if isinstance(tree, DictConfig):
        tree = OmegaConf.to_container(tree, resolve=True)
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def params_drift(params: DictConfig | dict, composed: DictConfig | dict) -> list[str]:
    """Describe each dotted key whose value differs between params.yaml and conf/."""
    have, want = flatten(params), flatten(composed)
    return [
        f"{key} (params.yaml: {have.get(key, '<absent>')!r}, conf/: {want.get(key, '<absent>')!r})"
        for key in sorted(have.keys() | want.keys())
        if have.get(key, "<absent>") != want.get(key, "<absent>")
    ]


def freshness_digest(params: DictConfig | dict) -> str:
    """SHA-256 of what decides whether `params` is the composition of conf/."""
    digest = hashlib.sha256(f"hydra {hydra.__version__} omegaconf {omegaconf.__version__}".encode())
    for path in sorted(CONF_DIR.rglob("*")):
        if path.is_file():
            digest.update(f"\0{path.relative_to(CONF_DIR).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    digest.update(json.dumps(flatten(params), sort_keys=True, default=repr).encode())
    return digest.hexdigest()


def check_params_fresh(
    params: DictConfig | dict, composed: DictConfig | None = None, stamp: Path | None = None
) -> None:
    """Raise `ConfigError` if params.yaml disagrees with the composition of conf/. With a
    `stamp` file (in a DVC project), a verdict of fresh is read from and written to it."""
    digest = None
    if stamp is not None and composed is None and stamp.parent.parent.is_dir():
        digest = freshness_digest(params)
        with contextlib.suppress(OSError):
            if stamp.read_text() == digest:
                return
    drift = params_drift(params, composed if composed is not None else compose_conf())
    if drift:
        shown = "; ".join(drift[:3]) + (f"; and {len(drift) - 3} more" if len(drift) > 3 else "")
        raise ConfigError(f"params.yaml is stale against conf/ at {shown}: {REFRESH}")
    if digest is not None:
        with contextlib.suppress(OSError):  # a read-only project checks again next time
            stamp.parent.mkdir(exist_ok=True)
            write_text(stamp, digest)


@functools.cache
def _schema_node() -> DictConfig:
    """The schema as an OmegaConf node, built once: building it is half of what a validation
    costs, and OmegaConf.merge works on a copy of it."""
    return OmegaConf.structured(Config)


def validate(cfg: DictConfig | dict) -> Config:
    """Check `cfg` against the schema; return it as a typed `Config`."""
    try:
        merged = OmegaConf.merge(_schema_node(), cfg)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"config is missing {', '.join(missing)}: set it in conf/")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"invalid config at {key}: {reason}; fix the override or conf/ (keys and types are "
            "listed in pipeline/schema.py)"
        ) from None


def run_by_dvc() -> bool:
    """Whether this Hydra app was started by a stage of dvc.yaml (`--config-name from_params`)."""
    return HydraConfig.initialized() and HydraConfig.get().job.config_name == DVC_CONFIG_NAME


def resume_command() -> str:
    """The command that runs this stage again as it was started: `dvc repro` under DVC, else
    the script with the same arguments."""
    if run_by_dvc():
        return "dvc repro"
    stage, args = Path(sys.argv[0]).stem, sys.argv[1:]
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and not any(a.startswith("hydra.sweep.dir=") for a in args):
        sweep_dir = HydraConfig.get().sweep.dir  # a sweep goes on in its own folder
        args = (
            [*args, f"hydra.sweep.dir={sweep_dir}"]
            if HydraConfig.get().mode.name == "MULTIRUN"
            else args
        )
    return " ".join(["python -m", f"pipeline.{stage}", *map(shlex.quote, args)])


def stage_config(cfg: DictConfig) -> Config:
    """Turn the config a stage's @hydra.main received into a validated `Config`.

    Run by DVC (`--config-name from_params`), the config is params.yaml, which must agree with
    conf/ unless DVC composed it for an experiment moments ago.
    """
    if run_by_dvc() and not os.environ.get("DVC_EXP_NAME"):
        check_params_fresh(cfg, stamp=FRESH_STAMP)
    return validate(cfg)
