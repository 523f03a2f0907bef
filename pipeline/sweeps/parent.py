"""A sweep's MLflow parent run, whose children are its trials' runs.

    parent_id = start(config, name, tags)          # before the first trial
    finish(parent_id, study)                       # best child, the study's counts and figures
    end_unfinished(parent_id, "KILLED", reason)  # a stopped sweep: no run left RUNNING

The best child is chosen by the dev accuracy of its saved model (test accuracy is reported,
never used to choose). The figures, drawn by `optuna.visualization.matplotlib`, are the
optimisation history, every trial's dev-accuracy curve (pruned ones marked where they stopped)
and, when two or more parameters are searched, their importances.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path

import mlflow
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.schema import TrackingConfig
from pipeline.sweeps.storage import Attr
from pipeline.tracking.runs import Run
from pipeline.tracking.store import open_store, runs_link
from pipeline.tracking.tags import KIND_TAG, TRIAL_TAG, code_tags, source_tags

SELECTION_METRIC = "model/dev_accuracy"  # dev accuracy of the weights each job saved


def tracking_of(config: DictConfig) -> TrackingConfig:
    return OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(TrackingConfig), config.tracking)
    )


def start(config: DictConfig, name: str, tags: dict[str, str]) -> str:
    sweeper, commit = config.hydra.sweeper, code_tags()[0].get("mlflow.source.git.commit", "")
    tags = {**source_tags(), "mlflow.source.git.commit": commit, KIND_TAG: "sweep",
            **{f"sweep.{key}": str(sweeper[key]._target_).rsplit(".", 1)[-1]
               for key in ("sampler", "pruner")}, **tags}  # fmt: skip
    space = " ".join(f"{key}={value}" for key, value in (sweeper.params or {}).items())
    params = {"sweep.overrides": " ".join(config.hydra.overrides.task) or "(none)",
              "sweep.params": space or "(none)"}  # fmt: skip
    experiment_id = open_store(tracking_of(config))
    run = Run.start(experiment_id, name=name, tags=tags, params=params)
    print(f"sweep: MLflow parent run {run.run_id}: {runs_link(experiment_id)}")
    return run.run_id


def reopen(parent: str, check_only: bool = False) -> str:
    """The study's parent run, RUNNING again (unless `check_only`), or one line saying it is
    not in this store."""
    client = mlflow.MlflowClient()
    try:
        client.get_run(parent)
    except Exception:
        raise PipelineError(
            f"the study's parent run {parent} is not in {mlflow.get_tracking_uri()}; start every "
            "worker with the same tracking.uri and tracking.experiment"
        ) from None
    if not check_only:
        client.update_run(parent, status="RUNNING")
        with contextlib.suppress(Exception):  # no error tag: nothing to take back
            client.delete_tag(parent, "error")
    return parent


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials complete, pruned, and failed by their own fault (not those stopped)."""
    trials = study.get_trials(deepcopy=False)
    return {"complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL and Attr.ERROR in t.user_attrs
                          for t in trials)}  # fmt: skip


def finish(parent: str, study: optuna.Study, status="FINISHED", reason=None) -> None:
    """Record the best finished child, the study's counts and figures on the parent run and
    end it with `status`, if it is still RUNNING (two sweepers may see the last trial end)."""
    run = Run(parent)
    if run.client.get_run(parent).info.status != "RUNNING":
        return
    children = run.client.search_runs(
        [run.client.get_run(parent).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{SELECTION_METRIC}` DESC"], max_results=10000,
    )  # fmt: skip
    scored = [child for child in children if SELECTION_METRIC in child.data.metrics]
    summary = {"sweep/children": len(children)}
    summary.update({f"study/{name}": n for name, n in counts(study).items()})
    with contextlib.suppress(Exception):  # a figure is a bonus, never the sweep's end
        figures(run, study)
    if scored:
        best = scored[0]
        summary["best/dev_accuracy"] = best.data.metrics[SELECTION_METRIC]
        if "test/accuracy" in best.data.metrics:
            summary["best/test_accuracy"] = best.data.metrics["test/accuracy"]
        run.set_tags({"best_run_id": best.info.run_id, "best_run_name": best.info.run_name})
        print(f"sweep: best dev accuracy {summary['best/dev_accuracy']:.4f} in run "
              f"{best.info.run_name} ({best.info.run_id}) of {len(children)}")  # fmt: skip
    run.log_metrics(summary)
    if reason is not None:
        run.set_tags({"error": reason})
    run.end(status)


def figures(run: Run, study: optuna.Study) -> None:
    """The study's figures, as PNGs in the parent's `figures/` artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    drawers = {"optimization_history": plots.plot_optimization_history,
               "intermediate_values": plots.plot_intermediate_values}  # fmt: skip
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # Importances rank two or more searched parameters (one alone is always 100%): only then
    # is the chart worth its second of importing scikit-learn for Optuna's fANOVA.
    if len(complete) >= 2 and len({name for t in complete for name in t.distributions}) >= 2:
        drawers["param_importances"] = plots.plot_param_importances
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    ends = [max(t.intermediate_values.items()) for t in pruned if t.intermediate_values]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib figures experimental
        files = []
        for name, draw in drawers.items():
            axes = draw(study)
            if name == "intermediate_values" and ends:
                axes.scatter(*zip(*ends, strict=True), marker="x", color="red", label="pruned")
                axes.legend(loc="lower right", fontsize="small")
            files.append((Path(folder) / f"{name}.png", "figures"))
            axes.figure.savefig(files[-1][0], dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
        run.log_artifacts_together(files)


def end_unfinished(parent: str, status: str, reason: str, only_trials=None) -> str:
    """End the children still RUNNING (of `only_trials`, if given, and then not the parent)
    with `status`, the reason in their `error` tag; say what was done."""
    client = mlflow.MlflowClient()
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{parent}'", max_results=10000
    )
    unfinished = [
        run.info.run_id
        for run in children
        if run.info.status == "RUNNING"
        and (only_trials is None or run.data.tags.get(TRIAL_TAG) in only_trials)
    ]
    for run_id in unfinished + ([parent] if only_trials is None else []):
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "error", reason)
            client.set_terminated(run_id, status)
    kept = sum(run.info.status == "FINISHED" for run in children)
    return f"{len(unfinished)} unfinished trial run(s) {status}, {kept} finished kept"
