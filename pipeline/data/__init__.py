"""Data preparation: where MNIST comes from, the IDX format, normalisation, the dev split."""
