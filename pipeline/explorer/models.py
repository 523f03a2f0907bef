"""Which network the explorer shows, and the run it came from.

A MODEL is a saved network file (`models/model.npz`), a registry alias (`@pipeline`, the
default) or version (`3`, `models:/mnist-mlp/3`), or an MLflow run id. Whatever it is, the
network is read by the project's one reader (serving/weights.py), and the MLflow run that
made it, when the store knows it, gives its name, config and test accuracy. A model that
cannot be had is one line saying why, shown in the terminal and on the page.
"""

from __future__ import annotations

import re
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.nn import MLP
from pipeline.serving.weights import WeightsError, load_network

RUN_ID = re.compile(r"[0-9a-f]{32}")
FIX = "give another MODEL: a models/model.npz path, @alias, a version number or a run id"


class ModelError(ValueError):
    """A model the explorer cannot show; the message is one line with the fix."""


@dataclass
class Explored:
    """One network on the page, or the line saying why it is not there."""

    asked: str  # the MODEL as given
    network: MLP | None = None
    error: str | None = None
    run: dict = field(default_factory=dict)  # name, id, test_accuracy, summary, link


def summary(params: dict[str, str]) -> str:
    """A run's config in one line, from its logged params."""
    hidden = params.get("model.hidden", "[]").strip("[]").replace(" ", "").split(",")
    shape = "-".join(["784", *[h for h in hidden if h], "10"])
    parts = [f"{shape} {params.get('model.activation', '?')}"]
    optimizer = params.get("optimizer.name")
    if optimizer:
        parts.append(f"{optimizer} lr {params.get('optimizer.lr')}, {params.get('schedule.name')}")
    if params.get("train.epochs"):
        parts.append(f"{params['train.epochs']} epochs, dropout {params.get('train.dropout')}")
    return "; ".join(parts)


def ui_link(tracking_uri: str, ui_url: str | None, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI: the tracking server's own, or `ui_url` (`make ui`)
    when something answers there."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else ui_url
    if not base:
        return None
    if base == ui_url:
        try:
            with urllib.request.urlopen(f"{ui_url.rstrip('/')}/health", timeout=0.5):
                pass
        except OSError:
            return None
    from pipeline.tracking.store import runs_link

    return runs_link(experiment_id, run_id, base)


def run_record(client, run_id: str, ui_url: str | None) -> dict:
    import mlflow

    run = client.get_run(run_id)
    accuracy = run.data.metrics.get("test/accuracy")
    return {
        "id": run_id,
        "name": run.info.run_name,
        "test_accuracy": accuracy,
        "summary": summary(run.data.params),
        "link": ui_link(mlflow.get_tracking_uri(), ui_url, run.info.experiment_id, run_id),
    }


def downloaded_weights(artifact_uri: str, folder: str) -> Path:
    """The .npz a logged model (or a run's weights file) holds, downloaded into `folder`."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=folder))
    found = [local] if local.is_file() else sorted(local.rglob("*.npz"))
    if not found:
        raise ModelError(f"{artifact_uri} holds no saved network (.npz): {FIX}")
    return found[0]


def from_store(asked: str, registered: str | None, ui_url: str | None) -> tuple[MLP, dict]:
    """The network and run an alias, version, models:/ URI or run id names."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.registry import MODEL_KIND_TAG, WEIGHTS_ARTIFACT

    client = mlflow.MlflowClient()
    try:
        if RUN_ID.fullmatch(asked):
            run = client.get_run(asked)
            if run.data.tags.get(MODEL_KIND_TAG) == "weights":  # a sweep job's
                source = f"{run.info.artifact_uri}/{WEIGHTS_ARTIFACT}"
            elif run.outputs and run.outputs.model_outputs:
                source = f"models:/{run.outputs.model_outputs[0].model_id}"
            else:
                raise ModelError(f"run {asked} logged no model: {FIX}")
            run_id = asked
        else:
            uri = asked
            if not uri.startswith("models:/"):
                if not registered:
                    raise ModelError(f"{asked}: tracking.registered_model is null in conf/")
                uri = f"models:/{registered}{asked}" if asked.startswith("@") else (
                    f"models:/{registered}/{asked}")  # fmt: skip
            name_and_rest = uri.removeprefix("models:/")
            if "@" in name_and_rest:
                name, alias = name_and_rest.split("@", 1)
                version = client.get_model_version_by_alias(name, alias)
            else:
                name, number = name_and_rest.rsplit("/", 1)
                version = client.get_model_version(name, number)
            source, run_id = version.source, version.run_id
        with tempfile.TemporaryDirectory() as folder:
            weights = downloaded_weights(source, folder)
            network = load_network(weights, fix=f"log the model again; {FIX}")
    except MlflowException as error:
        reason = str(error).splitlines()[0][:200]
        raise ModelError(f"{asked}: {reason}: {FIX}") from None
    except WeightsError as error:
        raise ModelError(str(error).replace(str(weights), f"{asked}'s weights")) from None
    return network, run_record(client, run_id, ui_url) if run_id else {}


def from_file(path: Path, ui_url: str | None, experiment_id: str | None) -> tuple[MLP, dict]:
    import mlflow

    from pipeline.tracking.training_runs import training_run_of

    network = load_network(path, fix=f"make it with `make repro`, or {FIX[0].lower()}{FIX[1:]}")
    run_id = training_run_of(experiment_id, path) if experiment_id else None
    return network, run_record(mlflow.MlflowClient(), run_id, ui_url) if run_id else {}


def explore_model(asked: str, tracking, ui_url: str | None) -> Explored:
    """`asked` loaded, or the line saying why not (the store is reached only if needed)."""
    from pipeline.plumbing.errors import PipelineError
    from pipeline.tracking.store import open_store

    try:
        if asked.endswith(".npz") or Path(asked).is_file():
            try:
                experiment_id = open_store(tracking)
            except PipelineError:  # the file alone is enough: no run to show
                experiment_id = None
            network, run = from_file(Path(asked), ui_url, experiment_id)
        elif asked.startswith(("@", "models:/")) or asked.isdigit() or RUN_ID.fullmatch(asked):
            open_store(tracking)
            network, run = from_store(asked, tracking.registered_model, ui_url)
        else:
            raise ModelError(f"MODEL {asked!r} is none of the kinds there are: {FIX}")
    except (ModelError, WeightsError, PipelineError) as error:
        return Explored(asked, error=str(error).splitlines()[0])
    return Explored(asked, network=network, run=run)


def first_layer_images(network: MLP) -> np.ndarray:
    """W¹ as one 28 × 28 image per hidden unit (units × 28 × 28)."""
    return network.weights[0].reshape(-1, 28, 28)
