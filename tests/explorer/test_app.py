"""The explorer's API with Flask's test client: answers computed by the core's passes, and
a 400 naming the reason for every request it cannot use."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from pipeline.explorer.app import create_app
from pipeline.explorer.drawing import mnist_like
from pipeline.explorer.looking import look_inside
from pipeline.explorer.models import Explored
from pipeline.nn import MLP


@pytest.fixture(scope="module")
def networks():
    rng = np.random.default_rng(3)
    return MLP.create((784, 20, 12, 10), "relu", "he", rng), MLP.create((784, 10, 10), rng=rng)


@pytest.fixture(scope="module")
def test_set():
    rng = np.random.default_rng(4)
    return {"images": rng.random((40, 784), dtype=np.float32),
            "labels": rng.integers(0, 10, 40).astype(np.uint8)}  # fmt: skip


@pytest.fixture
def client(networks, test_set):
    models = [Explored("deep.npz", network=networks[0]), Explored("notes.npz", network=networks[1]),
              Explored("@gone", error="@gone: no such alias")]  # fmt: skip
    return create_app(models, test_set).test_client()


def a_drawing(width: int = 120, height: int = 100) -> tuple[dict, np.ndarray]:
    ink = np.zeros((height, width), dtype=np.uint8)
    ink[20:30, 30:90] = 255  # a 7: its bar …
    for row in range(30, 90):
        ink[row, 85 - (row - 30) // 2 : 93 - (row - 30) // 2] = 255  # … and its stem
    encoded = base64.b64encode(ink.tobytes()).decode()
    return {"width": width, "height": height, "ink": encoded}, ink / 255.0


def test_a_drawing_is_answered_by_every_model_with_the_cores_own_numbers(client, networks):
    drawing, ink = a_drawing()
    answer = client.post("/api/look", json={"drawing": drawing}).get_json()
    image = mnist_like(ink).reshape(-1)
    np.testing.assert_allclose(answer["input"], image, atol=1e-4)
    for network, got in zip(networks, answer["models"][:2], strict=True):
        probabilities = network.probabilities(image[None, :])[0]
        np.testing.assert_allclose(got["probabilities"], probabilities, rtol=1e-5, atol=1e-7)
        assert got["predicted"] == network.predict(image[None, :])[0]
        assert [len(layer) for layer in got["layers"]] == list(network.sizes[1:-1])
    assert answer["models"][2] == {"error": "@gone: no such alias"}


def test_the_units_picked_out_are_those_adding_most_to_the_predicted_score(networks):
    network = networks[1]  # one hidden layer: unit j adds A¹ⱼ · W²[digit, j] to the score
    image = np.random.default_rng(5).random(784, dtype=np.float32)
    looked = look_inside(network, image)
    hidden = np.maximum(network.weights[0] @ image + network.biases[0][:, 0], 0)
    added = hidden * network.weights[1][looked["predicted"]]
    expected = [int(u) for u in np.argsort(-added, kind="stable")[:8] if added[u] > 0]
    assert looked["top_units"] == expected and expected
    np.testing.assert_allclose(looked["layers"][0], hidden, atol=1e-4)


def test_a_test_image_is_answered_as_it_is(client, networks, test_set):
    answer = client.post("/api/look", json={"test_index": 7}).get_json()
    np.testing.assert_allclose(answer["input"], test_set["images"][7], atol=1e-4)
    assert answer["models"][0]["predicted"] == networks[0].predict(test_set["images"][7:8])[0]


def test_the_mistakes_listed_are_the_test_images_the_model_gets_wrong(client, networks, test_set):
    found = client.get("/api/models/1/misclassified").get_json()
    predicted = networks[1].predict(test_set["images"])
    wrong = np.flatnonzero(predicted != test_set["labels"])
    assert found["total"] == len(wrong) > 0
    assert [item["index"] for item in found["items"]] == wrong.tolist()
    assert all(item["predicted"] == predicted[item["index"]] for item in found["items"])


def test_the_weights_atlas_has_one_tile_per_first_layer_unit(client):
    from matplotlib.image import imread

    listed = client.get("/api/models").get_json()
    deep = listed["models"][0]
    assert deep["sizes"] == [784, 20, 12, 10] and deep["atlas_columns"] == 5
    assert listed["models"][2]["error"] == "@gone: no such alias"
    png = client.get("/api/models/0/weights.png")
    assert png.mimetype == "image/png"
    assert imread(io.BytesIO(png.data)).shape[:2] == (4 * 29 + 1, 5 * 29 + 1)  # 20 units: 4 × 5


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "the body is not JSON: Expecting value"),
        ({"draw": 1}, 'send JSON with one of "drawing" or "test_index"'),
        ({"drawing": {}, "test_index": 1}, 'send JSON with one of "drawing" or "test_index"'),
        ({"drawing": [1, 2]}, '"drawing" must be {"width"'),
        ({"drawing": {"width": 10, "height": 10, "ink": "@@@"}}, '"ink" is not base64'),
        ({"drawing": {"width": 10, "height": 10, "ink": "AAAA"}}, "3 ink bytes for a 10 × 10"),
        ({"drawing": {"width": "10", "height": 10, "ink": ""}}, "width must be a whole number"),
        ({"drawing": {"width": 10, "height": 10, "ink": base64.b64encode(bytes(100)).decode()}},
         "the drawing is empty"),
        ({"test_index": 40}, '"test_index" must be a whole number in [0, 40)'),
        ({"test_index": True}, '"test_index" must be a whole number'),
    ],
)  # fmt: skip
def test_requests_it_cannot_use_get_a_400_with_the_reason(client, body, reason):
    response = client.post("/api/look", data="not json" if body is None else None,
                           json=body, content_type="application/json")  # fmt: skip
    assert response.status_code == 400
    assert reason in response.get_json()["error"]


def test_a_model_that_did_not_load_has_no_weights_or_mistakes(client):
    for path in (
        "/api/models/2/weights.png",
        "/api/models/2/misclassified",
        "/api/models/9/weights.png",
    ):
        response = client.get(path)
        assert response.status_code == 400 and "no loaded model" in response.get_json()["error"]
