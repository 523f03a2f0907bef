"""The paper table (`make ladder`): its rows from the presets, and a real queued run of two
presets in a DVC project whose MLflow runs carry their paper and feed the printed table."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from pipeline import ladder
from pipeline.ladder import Row, experiment_name, ladder_rows, minutes, table_lines
from pipeline.plumbing.errors import PipelineError
from tests import configs
from tests.conftest import copy_reproduced, dvc, project_client, run, tool_env


@pytest.mark.xdist_group("presets")  # on the worker that composed them: XDIST_GROUPS
def test_rows_run_from_the_notes_down_the_published_errors(monkeypatch):
    # Each preset as Hydra composes it, taken from what this process has composed already
    # (tests/training/test_hyperparameters.py composes every preset).
    monkeypatch.setattr(ladder, "compose_conf", lambda overrides: configs.composed(*overrides))
    rows = ladder_rows()
    assert rows[0].preset == "notes" and rows[0].paper_error is None
    errors = [row.paper_error for row in rows[1:]]
    assert errors == sorted(errors, reverse=True) and None not in errors
    # The table finds a row's runs by its paper.row tag: two presets may not share one.
    assert len({row.row for row in rows}) == len(rows)
    assert {"lecun1998_300", "simard2003_elastic", "srivastava2014_maxnorm"} <= {
        row.preset for row in rows
    }


def test_an_unknown_preset_is_named_with_the_ones_there_are():
    with pytest.raises(PipelineError, match=r"no preset nope in conf/experiment/; .*notes"):
        ladder_rows(["nope"])


def test_training_times_read_as_minutes_and_seconds():
    assert [minutes(s) for s in (0.4, 59.6, 1019.7, 3600)] == [
        "0 min 00 s",
        "1 min 00 s",
        "17 min 00 s",
        "60 min 00 s",
    ]


def test_a_row_fitted_on_train_and_dev_says_so_beside_its_epochs():
    row = Row("paper_final", "Final 2014", "3 × 1024", 0.0106, 150)

    def logged(include_dev: str, accuracy: float) -> SimpleNamespace:
        params = {"train.epochs": "150", "train.include_dev": include_dev}
        data = SimpleNamespace(metrics={"test/accuracy": accuracy}, params=params)
        return SimpleNamespace(data=data, info=SimpleNamespace(run_id="abc"))

    final = table_lines([row], {"paper_final": logged("True", 0.9895)}, markdown=True)[-1]
    held_out = table_lines([row], {"paper_final": logged("False", 0.9890)}, markdown=True)[-1]
    assert "| 1.05% ✔ | 150 on train + dev |" in final
    assert "| 1.10% ✘ | 150 |" in held_out


def test_experiment_names_are_numbered_past_the_ones_taken():
    assert experiment_name("notes", set()) == "notes"
    assert experiment_name("notes", {"notes", "notes-2"}) == "notes-3"


PRESET = """# @package _global_
model:
  hidden: [16]
optimizer:
  lr: {lr}
train:
  epochs: {epochs}
reference:
  source: {source}
  row: {row}
  test_error: {error}
"""


@pytest.mark.slow
def test_the_ladder_queues_each_preset_and_tables_its_run(reproduced, tmp_path):
    project = copy_reproduced(reproduced, tmp_path)
    presets = project / "conf" / "experiment"
    for path in presets.glob("*.yaml"):
        if path.stem != "notes":  # the real rows train for minutes: this project has two tiny
            path.unlink()
    # One that learns its synthetic bars (beats 80% error); one that could not in one tiny step,
    # listed and not run (a failed verdict's ✘ is test_a_row_fitted_on_train_and_dev_…'s).
    (presets / "paper_easy.yaml").write_text(
        PRESET.format(lr=0.01, epochs=10, source="Easy 2001", row="16 units, easy", error=0.8)
    )
    (presets / "paper_hard.yaml").write_text(
        PRESET.format(lr=1e-6, epochs=1, source="Hard 2002", row="16 units, hard", error=0.001)
    )
    # And one whose training refuses its learning rate: the queue goes on past it.
    (presets / "paper_broken.yaml").write_text(
        PRESET.format(lr=-1, epochs=1, source="Broken 2004", row="16 units, broken", error=0.1)
    )
    (presets / "untracked.yaml").write_text(PRESET.format(
        lr=0.01, epochs=1, source="New 2003", row="new", error=0.1))  # fmt: skip
    before = (project / "reports" / "test_metrics.json").read_bytes()
    ladder = [sys.executable, "-m", "pipeline.ladder"]
    refused = run([*ladder, "run", "untracked"], project, check=False)
    assert refused.returncode == 1
    assert "conf/experiment/untracked.yaml is not tracked by git" in refused.stderr
    (presets / "untracked.yaml").unlink()
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two papers"], project)

    default_store = ("MLFLOW_TRACKING_URI",)  # the project's mlflow.db
    ran = run([*ladder, "run", "paper_broken", "paper_easy"], project, check=False,
              unset=default_store)  # fmt: skip
    assert ran.returncode == 1
    assert "ladder: error: paper_broken failed: `dvc queue logs NAME` shows why" in ran.stderr
    table = ran.stdout
    client = project_client(project)
    (easy,) = client.search_runs(["1"], "tags.`dvc.exp_name` = 'paper_easy'")
    assert easy.info.status == "FINISHED"
    # It ran in a copy under .dvc/tmp/exps/ but logged here, through $DVC_ROOT.
    assert easy.info.artifact_uri.startswith((project / "mlruns").as_uri())
    assert easy.data.params["optimizer.lr"] == "0.01" and easy.data.params["train.epochs"] == "10"
    assert (
        easy.data.tags["paper"] == "Easy 2001" and easy.data.tags["paper.row"] == "16 units, easy"
    )
    assert easy.data.tags["paper.test_error"] == "0.8"
    easy_error = 1 - easy.data.metrics["test/accuracy"]
    assert easy_error <= 0.8  # so the mark below is the true verdict
    lines = [line for line in table.splitlines() if line.startswith(("notes", "paper_"))]
    # The notes' row has no published error and was not named: it is listed, not run here.
    assert [line.split()[0] for line in lines] == [
        "notes",
        "paper_easy",
        "paper_broken",
        "paper_hard",
    ]
    assert "not run" in lines[2]  # it failed: no tested run to show
    assert "not run" in lines[0] and "not run" in lines[3]  # not named
    assert "0.10%" in lines[3]  # the paper's error, run or not
    assert f"{100 * easy_error:.2f}% ✔" in lines[1] and easy.info.run_id in lines[1]
    assert " 10 " in lines[1]  # its epochs
    # The experiments ran in copies: the workspace's outputs are its own, and no timing is in
    # any file git or DVC tracks.
    assert (project / "reports" / "test_metrics.json").read_bytes() == before
    shown = dvc(["exp", "show", "--no-pager", "--csv"], project).stdout
    assert "seconds" not in shown
    # Each experiment's row names its MLflow run (reports/mlflow_run.json, committed in it).
    rows = {line.split(",")[0]: line for line in shown.splitlines()}
    assert easy.info.run_id in rows["paper_easy"]
    again = run([*ladder, "table", "--markdown"], project, unset=default_store)
    assert "| paper_easy | Easy 2001 | 16 units, easy | 80.00% |" in again.stdout


def test_a_bad_command_prints_the_usage():
    done = subprocess.run([sys.executable, "-m", "pipeline.ladder", "tabel"], env=tool_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m pipeline.ladder")
