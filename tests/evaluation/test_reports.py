"""The evaluate stage: scores against hand-computed values, the files it writes, the pyfunc
wrapper's input checks, and errors that name the stage to run."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.evaluate import EvaluateOutputs, evaluate_model, load_model, read_history
from pipeline.io import save_arrays
from pipeline.nn import MLP
from pipeline.scoring import classification_report, confusion_matrix
from pipeline.serving import as_images, predictions_frame
from tests.conftest import split_arrays

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_scores_match_a_hand_computed_example():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])  # class 2 is never predicted
    np.testing.assert_array_equal(
        confusion_matrix(labels, predicted, 3), [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    )
    report = classification_report(labels, predicted, 3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    zero, one, two = (report["per_class"][c] for c in "012")
    assert (zero["precision"], zero["recall"]) == (1.0, pytest.approx(2 / 3))
    assert (one["precision"], one["recall"]) == (0.5, 1.0)
    assert zero["f1"] == pytest.approx(0.8) and one["f1"] == pytest.approx(2 / 3)
    assert two == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)


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
        read_history(tmp_path / "history.csv")
    save_arrays(tmp_path / "not-a-model.npz", images=np.zeros(3))
    with pytest.raises(PipelineError, match="not a model saved by this project"):
        load_model(tmp_path / "not-a-model.npz")


def test_pyfunc_input_is_checked_and_probabilities_sum_to_one():
    network = MLP.create((784, 8, 10), rng=np.random.default_rng(1))
    frame = predictions_frame(network, as_images(np.zeros(784), 784))  # one flat image
    assert list(frame.columns) == ["digit"] + [f"p{d}" for d in range(10)]
    assert frame.iloc[0, 1:].sum() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"rows of 784 pixel values \(N×784\), got shape \(2, 28"):
        as_images(np.zeros((2, 28, 28)), 784)
