"""See inside a trained network: a local page to draw a digit and watch every layer answer.

    python -m pipeline.explore                          # the model @pipeline names (make explore)
    python -m pipeline.explore models/model.npz         # a saved network, its run found by hash
    python -m pipeline.explore 3 --compare @pipeline    # registry version 3 beside the alias's
    python -m pipeline.explore RUN_ID --port 5200       # the model an MLflow run logged

The page: a canvas (mouse, pen or touch) whose drawing is made MNIST-like (20 × 20 box,
centred by centre of mass in 28 × 28) and shown; the 10 probabilities; every hidden layer's
activations; the first layer's weights, one 28 × 28 tile per unit, with the units that most
drive the prediction picked out; the test images the model gets wrong, to load with a click;
the run it came from, linked to the MLflow UI when one is up (`make ui`). It serves on
127.0.0.1 only, unless --host says otherwise. The store and model name come from conf/.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.process import skip_last_collection

DEFAULT_PORT = 5100


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.explore", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", nargs="?", help="models/….npz, @alias, version or run id")
    parser.add_argument("--compare", metavar="MODEL", help="a second model, shown beside it")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"({DEFAULT_PORT})")
    parser.add_argument("--ui-url", default="http://127.0.0.1:5000",
                        help="where `make ui` serves the MLflow UI, for links to runs")  # fmt: skip
    parser.add_argument("--test-data", help="test set .npz (default data/normalised/test.npz)")
    return parser.parse_args(argv)


def test_set(path) -> dict | None:
    from pipeline.plumbing.files import load_arrays

    if not path.is_file():
        print(f"explore: no test set at {path} (make repro makes it): no mistakes to list")
        return None
    return load_arrays(path, ("images", "labels"), made_by="normalise")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from pathlib import Path

        from werkzeug.serving import make_server

        from pipeline.explorer.app import create_app
        from pipeline.explorer.models import explore_model
        from pipeline.plumbing.config import compose_conf, validate
        from pipeline.plumbing.paths import NORMALISED_TEST

        tracking = validate(compose_conf()).tracking
        asked = [args.model or f"@{tracking.alias}", *([args.compare] if args.compare else [])]
        models = [explore_model(model, tracking, args.ui_url) for model in asked]
        for model in models:
            if model.error:
                print(f"explore: error: {model.error}", file=sys.stderr)
            else:
                run = model.run.get("name") or "no MLflow run records it"
                print(f"explore: {model.asked}: {'-'.join(map(str, model.network.sizes))} ({run})")
        test = test_set(Path(args.test_data) if args.test_data else NORMALISED_TEST)
        try:
            server = make_server(args.host, args.port, create_app(models, test), threaded=True)
        except OSError as error:
            raise PipelineError(
                f"cannot serve on {args.host}:{args.port} ({error.strerror or error}): "
                "give another --port (make explore EXPLORE_PORT=…)"
            ) from None
    except PipelineError as error:
        print(f"explore: error: {error}", file=sys.stderr)
        return 1
    where = "this machine only" if args.host in ("127.0.0.1", "localhost") else "the network"
    print(f"explore: serving on http://{args.host}:{server.server_port}/ ({where}; "
          "--host 0.0.0.0 shares it); Ctrl-C stops it", flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("explore: stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    skip_last_collection()
    sys.exit(main())
