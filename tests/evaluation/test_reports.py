"""Evaluation reports: the files written for a model, and errors that name the stage to run."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipeline.evaluation.reports import evaluate_model, load_model
from pipeline.nn import MLP, model_to_arrays
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import read_columns, save_arrays
from pipeline.plumbing.paths import EvaluateOutputs
from tests.conftest import split_arrays

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_evaluate_writes_metrics_confusion_rows_and_figures(tmp_path):
    network = MLP.create((784, 16, 10), rng=np.random.default_rng(0))
    test = split_arrays(50, 3)
    history = {
        "epoch": np.array([1.0, 2.0]),
        "train_loss": np.array([1.0, 0.5]),
        "dev_loss": np.array([1.2, 0.7]),
        "train_accuracy": np.array([0.5, 0.8]),
        "dev_accuracy": np.array([0.4, 0.7]),
    }
    outputs = EvaluateOutputs.under(tmp_path)
    metrics = evaluate_model(network, test, history, outputs)
    predicted = network.predict(test["images"])
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == test["labels"]))
    assert metrics["examples"] == 50 and set(metrics["per_class"]) == set("0123456789")
    with open(outputs.confusion) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 50
    assert [int(r["actual"]) for r in rows] == test["labels"].tolist()
    assert [int(r["predicted"]) for r in rows] == predicted.tolist()
    for name in ("confusion_matrix", "training_curves", "misclassified"):
        picture = outputs.figure(name).read_bytes()
        assert picture.startswith(PNG_SIGNATURE) and len(picture) > 5000


def test_missing_inputs_name_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match=r"run `dvc repro train` first"):
        load_model(tmp_path / "model.npz")
    with pytest.raises(PipelineError, match=r"run `dvc repro train` first"):
        read_columns(tmp_path / "history.csv", made_by="train")
    save_arrays(tmp_path / "not-a-model.npz", images=np.zeros(3))
    with pytest.raises(
        PipelineError, match=r"not a model saved by this project.*dvc repro -f train"
    ):
        load_model(tmp_path / "not-a-model.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(PipelineError, match=r"garbage\.npz is damaged \(not a whole \.npz archive"):
        load_model(tmp_path / "garbage.npz")


def test_a_saved_model_loads_back_identical(tmp_path):
    network = MLP.create((784, 16, 10), rng=np.random.default_rng(0))
    save_arrays(tmp_path / "model.npz", **model_to_arrays(network))
    loaded = load_model(tmp_path / "model.npz")
    for ours, theirs in zip(loaded.params(), network.params(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
