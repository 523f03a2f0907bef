"""The pyfunc wrapper: input checks that name the bad row and the fix, and the prediction frame."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import MLP


@pytest.fixture(scope="module")
def pyfunc():
    """pipeline.serving.pyfunc, imported here, not at the top: it imports MLflow and pandas, and
    `make test-fast` imports this module in both its workers but runs its tests in one
    (XDIST_GROUPS in tests/conftest.py)."""
    from pipeline.serving import pyfunc

    return pyfunc


@pytest.fixture
def classifier(pyfunc):
    model = pyfunc.DigitClassifier()
    model.network = MLP.create((784, 8, 10), rng=np.random.default_rng(1))
    return model


def test_predictions_are_the_networks_and_probabilities_sum_to_one(pyfunc, classifier):
    import pandas as pd

    images = np.eye(784, dtype=np.float32)[:3]
    frame = classifier.predict(None, images.tolist())
    assert list(frame.columns) == ["digit"] + [f"p{d}" for d in range(10)]
    np.testing.assert_array_equal(frame["digit"], classifier.network.predict(images))
    np.testing.assert_allclose(frame.iloc[:, 1:].sum(axis=1), 1.0, rtol=1e-6)
    flat_image = pyfunc.as_images(np.zeros(784), 784)
    one = pyfunc.predictions_frame(classifier.network, flat_image)
    assert len(one) == 1
    as_frame = classifier.predict(None, pd.DataFrame(images))
    np.testing.assert_array_equal(as_frame["digit"], frame["digit"])


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (np.nan, "a missing, NaN or infinite pixel"),
        (np.inf, "a missing, NaN or infinite pixel"),
        (None, "a missing, NaN or infinite pixel"),
        (255.0, "a pixel outside [0, 1]"),
        (-0.5, "a pixel outside [0, 1]"),
    ],
)
def test_a_bad_pixel_is_refused_naming_its_row_and_the_fix(pyfunc, classifier, value, said):
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

    rows = np.zeros((3, 784)).tolist()
    rows[1][7] = value
    with pytest.raises(pyfunc.BadImages) as error:
        classifier.predict(None, rows)
    assert error.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
    assert error.value.get_http_status_code() == 400
    assert f"row 1 (of 3) has {said} (pixel 7" in error.value.message


def test_a_wrong_shape_or_text_is_refused_clearly(pyfunc):
    with pytest.raises(
        pyfunc.BadImages, match=r"rows of 784 pixel values \(N×784\), got shape \(2, 28"
    ):
        pyfunc.as_images(np.zeros((2, 28, 28)), 784)
    with pytest.raises(pyfunc.BadImages, match="cannot read the input as numbers"):
        pyfunc.as_images([["a"] * 784], 784)


def test_a_csv_read_without_its_header_line_is_refused(pyfunc):
    import pandas as pd

    pixels = np.zeros((2, 784), dtype=np.float32)
    named = pd.DataFrame(pixels)  # columns 0 … 783, as DataFrame.to_csv writes them
    assert pyfunc.as_images(named, 784).shape == (2, 784)
    # pandas read a first line of pixel values as names: 0.0, 0.0.1, 0.0.2, …
    headerless = pd.DataFrame(pixels, columns=["0.0", *(f"0.0.{i}" for i in range(1, 784))])
    with pytest.raises(pyfunc.BadImages, match="the first CSV line holds pixel values"):
        pyfunc.as_images(headerless, 784)
    with pytest.raises(pyfunc.BadImages, match="header line"):
        pyfunc.as_images(pd.DataFrame(pixels, columns=[f"{0.5 + i}" for i in range(784)]), 784)
