"""Whatever a script sends the explorer, it answers a 4xx with a one-line reason, never a 5xx,
and holds no more memory than the largest drawing needs: arbitrary JSON and bytes (Hypothesis),
with and without the JSON content type, to the POST endpoint and the GET endpoints, and the two
requests that once broke it, sent to a real server over a socket."""

from __future__ import annotations

import base64
import http.client
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from pipeline.explorer.app import MAX_BODY, create_app
from pipeline.explorer.models import Explored
from pipeline.nn import MLP

EXAMPLES = 400  # per property; about 2 s each here
# What a request may cost the process (Python's allocations while it is answered): the
# largest drawing, 2048 × 2048, needs about 200 MB of float64 work; the bodies here are small.
MEMORY_BOUND = 16 * 2**20


@pytest.fixture(scope="module")
def app():
    rng = np.random.default_rng(5)
    models = [Explored("deep.npz", network=MLP.create((784, 16, 10), "relu", "he", rng)),
              Explored("@gone", error="@gone: no such alias")]  # fmt: skip
    test = {"images": rng.random((30, 784), dtype=np.float32),
            "labels": rng.integers(0, 10, 30).astype(np.uint8)}  # fmt: skip
    return create_app(models, test)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
side = st.integers() | st.sampled_from([0, 7, 8, 9, 2048, 2049, 10**30]) | json_values
drawings = st.fixed_dictionaries(
    {},
    optional={
        "width": side,
        "height": side,
        "ink": json_values | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    },
)
look_bodies = st.dictionaries(
    st.sampled_from(["drawing", "test_index", "other"]),
    drawings | st.integers() | json_values,
    max_size=3,
)
# Nesting deeper than Python's recursion limit, with or without the brackets closed.
deep = st.builds(
    lambda depth, closed, bracket: bracket[0] * depth + (bracket[1] * depth if closed else ""),
    st.integers(500, 200_000),
    st.booleans(),
    st.sampled_from(["[]", ['{"a":', "}"]]),
).map(str.encode)
content_types = st.sampled_from(
    [None, "application/json", "application/json; charset=latin-1", "text/plain",
     "application/x-www-form-urlencoded", "multipart/form-data"]
)  # fmt: skip


def assert_refused_in_one_line(response) -> None:
    assert response.status_code < 500, response.data[:300]
    if response.status_code >= 400:
        error = response.get_json()["error"]
        assert error and "\n" not in error and "Traceback" not in error


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=look_bodies | json_values | st.binary(max_size=400) | deep,
    content_type=content_types,
    path=st.sampled_from(["/api/look", "/api/models", "/api/models/0/misclassified", "/"]),
)
def test_any_post_body_gets_an_answer_below_500_in_bounded_memory(app, body, content_type, path):
    data = body if isinstance(body, bytes) else None
    kwargs = {"data": data} if data is not None else {"json": body}
    tracemalloc.start()
    try:
        with app.test_client() as client:
            response = client.post(path, content_type=content_type, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_refused_in_one_line(response)
    assert peak < MEMORY_BOUND


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    index=st.integers() | st.text(max_size=12),
    view=st.sampled_from(["weights.png", "misclassified", "", "other"]),
    test_index=st.integers(),
)
def test_any_get_path_and_test_index_get_an_answer_below_500(app, index, view, test_index):
    with app.test_client() as client:
        assert_refused_in_one_line(client.get(f"/api/models/{index}/{view}"))
        assert_refused_in_one_line(client.post("/api/look", json={"test_index": test_index}))


@pytest.fixture
def server(app):
    """The app served over a real socket, as `make explore` serves it."""
    served = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=served.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served.server_port
    served.shutdown()
    served.server_close()


def post(port: int, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    import json

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/api/look")
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()
        connection.send(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_deeply_nested_body_is_a_400_and_no_traceback(server, capfd):
    body = b"[" * 100_000 + b"]" * 100_000
    status, answer = post(server, {"Content-Type": "application/json",
                                   "Content-Length": str(len(body))}, body)  # fmt: skip
    assert (status, answer) == (400, {"error": "the JSON is nested too deeply"})
    assert "Traceback" not in capfd.readouterr().err


def test_a_200_mb_body_is_a_413_before_it_is_read(server):
    """Only the headers and the first megabyte are sent: the answer comes without the rest,
    so the server neither waited for nor held the 200 MB."""
    tracemalloc.start()
    try:
        headers = {"Content-Type": "application/json", "Content-Length": str(200 * 2**20)}
        status, answer = post(server, headers, b" " * 2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 413 and answer["error"].startswith(f"the body is over {MAX_BODY} bytes")
    assert peak < MEMORY_BOUND


def test_the_largest_drawing_fits_under_the_cap(app):
    ink = np.zeros((2048, 2048), dtype=np.uint8)
    ink[500:1500, 1000:1100] = 255  # a 1
    drawing = {"width": 2048, "height": 2048, "ink": base64.b64encode(ink.tobytes()).decode()}
    with app.test_client() as client:
        response = client.post("/api/look", json={"drawing": drawing})
    assert response.status_code == 200
    assert response.get_json()["models"][0]["predicted"] in range(10)
