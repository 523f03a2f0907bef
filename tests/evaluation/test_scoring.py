"""Classification scores against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.scoring import classification_report, confusion_matrix


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
