"""The network explorer (`make explore`, `python -m pipeline.explore`): a local page to draw a
digit and watch every layer of a trained network answer. It may import the core, serving and
tracking; nothing imports it."""
