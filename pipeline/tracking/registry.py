"""The model in MLflow: logged as a pyfunc with only the code it needs, registered, promoted.

Logging ships the weights (`model.npz`), pipeline/serving/model_code.py and the code that file
imports: pipeline/serving and the numpy core pipeline/nn (plus the package's empty
`__init__.py`), nothing else of the project; the requirements name every package that code
imports (mlflow, numpy, pandas), so `mlflow models serve` can build its environment from them.

Only `dvc repro` registers its model and moves the alias (`models:/mnist-mlp@pipeline`).
Experiments log theirs without registering. A sweep job logs only its weights
(`weights/model.npz`, tag model.logged=weights): one file instead of some twenty, the
difference between 0.1 and 1.5 s a trial through a server. To make another model the one the
alias names:

    python -m pipeline.runs promote VERSION     # a registered version
    python -m pipeline.runs promote RUN_ID      # a run's model: registered, then aliased (a
                                                # sweep job's weights become a pyfunc first)
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.paths import ROOT
from pipeline.serving.pyfunc import predictions_frame
from pipeline.serving.weights import WeightsError, load_network

PACKAGE = ROOT / "pipeline"
SHIPPED = ("nn", "serving")  # sub-packages of `pipeline` the served model imports
MODEL_CODE = PACKAGE / "serving" / "model_code.py"
ARTIFACT = "model"  # the model's name within its run
WEIGHTS_ARTIFACT = "weights/model.npz"  # a sweep job's model: its weights only
MODEL_KIND_TAG = "model.logged"  # "pyfunc", or "weights" until `promote` makes the pyfunc


class RegistryError(PipelineError):
    """A model version or run to promote does not exist."""


def shipped_code(target: Path) -> Path:
    """A copy of the package holding only what the served model imports; returns its root."""
    package = target / "pipeline"
    package.mkdir()
    shutil.copy2(PACKAGE / "__init__.py", package / "__init__.py")
    for name in SHIPPED:
        shutil.copytree(
            PACKAGE / name, package / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    return package


def requirements() -> list[str]:
    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
    ]


# MLflow checks a model's requirements against the installed packages when it logs and when it
# loads one, and to name their modules first maps every file of every installed distribution to
# its package: about a second a model. `requirements` lists the running versions themselves,
# which cannot mismatch, so logging skips that check (where this MLflow version has it).
REQUIREMENT_CHECKS = (("mlflow.utils.environment", "warn_dependency_requirement_mismatches"),
                      ("mlflow.pyfunc", "warn_dependency_requirement_mismatches"))  # fmt: skip


@contextlib.contextmanager
def requirements_known_installed():
    replaced = []
    for module_name, name in REQUIREMENT_CHECKS:
        module = importlib.import_module(module_name)
        if callable(getattr(module, name, None)):
            replaced.append((module, name, getattr(module, name)))
            setattr(module, name, lambda requirements: None)
    try:
        yield
    finally:
        for module, name, check in replaced:
            setattr(module, name, check)


_signatures: dict[int, ModelSignature] = {}


def signature(network, example) -> ModelSignature:
    """Outputs only: with an input tensor schema, MLflow's scoring server cannot read CSV (it
    asks the tensor for pandas types and fails before the model sees the request). The model
    checks its input itself, more strictly than a schema can (serving/pyfunc). The frame of
    digit and p0 … p9 is the same for every model with as many outputs: inferred once a
    process, not once a sweep job."""
    outputs = network.sizes[-1]
    if outputs not in _signatures:
        frame = predictions_frame(network, example)
        _signatures[outputs] = ModelSignature(outputs=infer_signature(example, frame).outputs)
    return _signatures[outputs]


def log_pyfunc_model(run, weights: Path, example, register: str | None, alias: str) -> None:
    """Log the network as a pyfunc model in `run` (MLflow loads it back and predicts
    `example`, proving it serves); register it and move `alias` if asked. The run keeps the
    status it had."""
    try:
        network = load_network(weights, fix="train it again, or log another run's model")
    except WeightsError as error:
        raise RegistryError(str(error)) from None
    status = run.client.get_run(run.run_id).info.status
    with (
        tempfile.TemporaryDirectory() as staging,
        mlflow.start_run(run_id=run.run_id),
        warnings.catch_warnings(),
        requirements_known_installed(),
    ):
        # Hints aimed at models without a signature or with missing values: neither applies.
        warnings.simplefilter("ignore", UserWarning)
        # A copy: MLflow cannot log a symlink (DVC's `cache.type symlink` makes the model one).
        shipped_weights = Path(staging) / weights.name
        shutil.copyfile(weights, shipped_weights)
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT,
            python_model=str(MODEL_CODE),  # models from code, no pickle
            artifacts={"weights": str(shipped_weights)},
            code_paths=[str(shipped_code(Path(staging)))],
            signature=signature(network, example),
            input_example=example,
            registered_model_name=register,
            # Listed, not inferred: inference loads the model in a subprocess and takes seconds.
            pip_requirements=requirements(),
        )
        if register:
            version = info.registered_model_version
            run.client.set_registered_model_alias(register, alias, version)
            run.set_tags({"registered_model": f"{register} v{version} @{alias}"})
    run.client.update_run(run.run_id, status=status)  # start_run's exit set FINISHED


def promote(name: str, alias: str, target: str) -> str:
    """Point `name@alias` at version `target`, or at the model logged by run `target`
    (registering it first; for a sweep job, which logged its weights only, logging the pyfunc
    from them first); return the version."""
    client = mlflow.MlflowClient()
    try:
        if target.isdigit():
            version = client.get_model_version(name, target).version
        else:
            run = client.get_run(target)  # a clear error for an unknown run id
            if run.data.tags.get(MODEL_KIND_TAG) == "weights":
                pyfunc_from_weights(target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                version = mlflow.register_model(f"runs:/{target}/{ARTIFACT}", name).version
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as error:
        reason = str(error).splitlines()[0]
        raise RegistryError(
            f"cannot promote {target!r} to {name}@{alias} ({reason[:300]}): give a version "
            f"listed by the MLflow UI's Models page, or the id of a run that logged a model"
        ) from None
    return str(version)


def pyfunc_from_weights(run_id: str) -> None:
    """Log, in run `run_id`, the pyfunc model of the weights it logged (a sweep job's)."""
    from pipeline.tracking.runs import Run

    with tempfile.TemporaryDirectory() as folder:
        weights = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=WEIGHTS_ARTIFACT, dst_path=folder
        )
        example = np.zeros((2, 784), dtype=np.float32)
        try:
            log_pyfunc_model(Run(run_id), Path(weights), example, None, "")
        except RegistryError as error:  # name the file as the store holds it, not our copy
            raise RegistryError(
                str(error).replace(str(weights), f"run {run_id}'s {WEIGHTS_ARTIFACT}")
            ) from None
    mlflow.MlflowClient().set_tag(run_id, MODEL_KIND_TAG, "pyfunc")
