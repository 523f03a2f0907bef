"""The explorer's web app (Flask): the page, and a small JSON API the page calls.

    GET  /                              the page (static/index.html, explorer.js, explorer.css)
    GET  /api/models                    each model: what was asked, its run, layer sizes, or
                                        the line saying why it could not be loaded
    GET  /api/models/<i>/weights.png    W¹ as one 28 × 28 tile per hidden unit (red +, blue −)
    GET  /api/models/<i>/misclassified  the test images it gets wrong, with their pixels
    POST /api/look                      {"drawing": {"width", "height", "ink": base64 bytes}}
                                        or {"test_index": n}: the MNIST-like input made of it,
                                        and every model's probabilities, activations, top units

A request the API cannot use gets a 4xx with {"error": why} (a body larger than the largest
drawing: 413, before it is read; a body that is not the JSON object asked for, however it is
wrong: 400), and nothing in the terminal but the request's line; nothing is computed in the
browser but the drawing itself.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from pathlib import Path

import numpy as np
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from pipeline.explorer.drawing import MAX_SIDE, DrawingError, ink_from_bytes, mnist_like
from pipeline.explorer.looking import look_inside
from pipeline.explorer.models import Explored, first_layer_images

STATIC = Path(__file__).with_name("static")
SHOWN_MISTAKES = 120  # misclassified test images listed per model
# The largest body a request needs: the largest canvas's ink in base64, and room for its keys.
MAX_BODY = 4 * math.ceil(MAX_SIDE * MAX_SIDE / 3) + 1024


class BadRequest(ValueError):
    """A request the API cannot use; the message is the 400's reason."""


def weights_atlas(network) -> tuple[bytes, int]:
    """A PNG of every hidden unit's 28 × 28 incoming weights, each scaled by its own largest
    magnitude, on a grid one pixel apart; and the grid's column count."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    tiles = first_layer_images(network).astype(np.float64)
    scale = np.abs(tiles).max(axis=(1, 2), keepdims=True)
    tiles = tiles / np.where(scale > 0, scale, 1.0)
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    atlas = np.full((rows * 29 + 1, columns * 29 + 1), np.nan)
    for unit, tile in enumerate(tiles):
        top, left = 1 + 29 * (unit // columns), 1 + 29 * (unit % columns)
        atlas[top : top + 28, left : left + 28] = tile
    colours = colormaps["RdBu_r"]((atlas + 1) / 2)
    colours[np.isnan(atlas)] = (1, 1, 1, 1)
    buffer = io.BytesIO()
    imsave(buffer, colours, format="png")
    return buffer.getvalue(), columns


def decode_drawing(drawing) -> np.ndarray:
    if not isinstance(drawing, dict) or set(drawing) != {"width", "height", "ink"}:
        raise BadRequest('"drawing" must be {"width": …, "height": …, "ink": base64 bytes}')
    try:
        data = base64.b64decode(str(drawing["ink"]), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest('"ink" is not base64') from None
    try:
        return ink_from_bytes(data, drawing["width"], drawing["height"])
    except DrawingError as error:
        raise BadRequest(str(error)) from None


def json_object() -> dict:
    """The request's body as a JSON object, or a `BadRequest` naming what is wrong with it.
    A body over MAX_BODY never gets here: Flask answers 413 before reading it."""
    if not request.is_json:
        raise BadRequest("send a JSON object with the header Content-Type: application/json")
    data = request.get_data(cache=False)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 text (byte {error.start})") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except ValueError as error:  # not JSON, or an integer too long to read
        raise BadRequest(f"the body is not JSON: {str(error).splitlines()[0][:120]}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def create_app(models: list[Explored], test: dict[str, np.ndarray] | None) -> Flask:
    """The app for `models` (the first is the main one; a second is compared beside it) and
    the test set (`images`, `labels`), or None when it is not there."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    atlases: dict[int, tuple[bytes, int]] = {}

    def atlas(index: int) -> tuple[bytes, int]:
        if index not in atlases:
            atlases[index] = weights_atlas(models[index].network)
        return atlases[index]

    def loaded(index: int) -> Explored:
        if not 0 <= index < len(models) or models[index].network is None:
            raise BadRequest(f"no loaded model {index}")
        return models[index]

    @app.errorhandler(BadRequest)
    def bad_request(error):
        return jsonify(error=str(error)), 400

    @app.errorhandler(413)
    def too_large(error):
        return jsonify(
            error=f"the body is over {MAX_BODY} bytes, more than the largest drawing "
            f"({MAX_SIDE} × {MAX_SIDE}) needs"
        ), 413

    @app.errorhandler(HTTPException)
    def other_http_error(error):  # a wrong path or method: one line, as JSON like the rest
        return jsonify(error=f"{error.name}: {error.description}"), error.code

    @app.get("/")
    def page():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)

    @app.get("/api/models")
    def model_list():
        described = []
        for index, model in enumerate(models):
            entry = {"index": index, "asked": model.asked, "error": model.error, "run": model.run}
            if model.network is not None:
                entry["sizes"] = list(model.network.sizes)
                entry["atlas_columns"] = atlas(index)[1]
            described.append(entry)
        return jsonify(models=described, test_images=0 if test is None else len(test["labels"]))

    @app.get("/api/models/<int:index>/weights.png")
    def weights(index: int):
        loaded(index)
        return Response(atlas(index)[0], mimetype="image/png")

    @app.get("/api/models/<int:index>/misclassified")
    def misclassified(index: int):
        network = loaded(index).network
        if test is None:
            return jsonify(items=[], total=0, note="no test set here: make repro makes it")
        predicted = network.predict(test["images"])
        wrong = np.flatnonzero(predicted != test["labels"])
        items = [
            {"index": int(i), "label": int(test["labels"][i]), "predicted": int(predicted[i]),
             "pixels": [round(float(p), 3) for p in test["images"][i]]}
            for i in wrong[:SHOWN_MISTAKES]
        ]  # fmt: skip
        return jsonify(items=items, total=len(wrong))

    @app.post("/api/look")
    def look():
        body = json_object()
        if len(set(body) & {"drawing", "test_index"}) != 1:
            raise BadRequest('send JSON with one of "drawing" or "test_index"')
        if "drawing" in body:
            try:
                image = mnist_like(decode_drawing(body["drawing"])).reshape(-1)
            except DrawingError as error:
                raise BadRequest(str(error)) from None
        else:
            index = body["test_index"]
            count = 0 if test is None else len(test["labels"])
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
                raise BadRequest(f'"test_index" must be a whole number in [0, {count})')
            image = test["images"][index]
        answers = [
            {"error": model.error} if model.network is None else look_inside(model.network, image)
            for model in models
        ]
        return jsonify(input=[round(float(p), 4) for p in image], models=answers)

    return app
