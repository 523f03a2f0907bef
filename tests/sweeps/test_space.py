"""A sweep's search space read from Hydra's override syntax: each kind of sweep becomes the
Optuna distribution it means, fixed overrides stay fixed, the last override of a key wins."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.plumbing.config import ConfigError
from pipeline.sweeps.space import SearchSpace


def test_each_kind_of_sweep_becomes_its_distribution():
    space = SearchSpace.parse([
        "optimizer=nesterov,adam", "optimizer.lr=tag(log, interval(1e-4, 3e-3))",
        "train.dropout=interval(0.0, 0.4)", "model.hidden=choice([128],[256])",
        "train.batch_size=range(32, 129, 32)", "train.patience=tag(int, log, interval(2, 64))",
        "train.epochs=5",
    ])  # fmt: skip
    assert space.distributions == {
        "optimizer": CategoricalDistribution(["nesterov", "adam"]),
        "optimizer.lr": FloatDistribution(1e-4, 3e-3, log=True),
        "train.dropout": FloatDistribution(0.0, 0.4),
        "model.hidden": CategoricalDistribution(["[128]", "[256]"]),
        "train.batch_size": IntDistribution(32, 128, step=32),  # Hydra's range ends before 129
        "train.patience": IntDistribution(2, 64, log=True),
    }
    assert space.fixed == ["train.epochs=5"]
    assert space.grid is None  # intervals are no grid
    params = {"optimizer": "adam", "model.hidden": "[128]", "optimizer.lr": 0.001}
    assert space.overrides(params) == [
        "train.epochs=5",
        "optimizer=adam",
        "model.hidden=[128]",
        "optimizer.lr=0.001",
    ]


def test_the_last_override_of_a_key_wins_and_choices_alone_are_a_grid():
    space = SearchSpace.parse(["optimizer=nesterov,adam", "model.hidden=[16],[32]",
                               "train.epochs=5", "optimizer=sgd", "train.epochs=7"])  # fmt: skip
    assert space.fixed == ["optimizer=sgd", "train.epochs=7"]
    assert space.grid == {"model.hidden": ["[16]", "[32]"]}


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("optimizer.lr=tag(log, interval(0.0, 1.0))", "not above 0"),
        ("train.dropout=interval(0.4, 0.1)", "interval(0.4, 0.1) is empty"),
        ("optimizer.lr=interval(0.1", "cannot read the sweep's overrides"),
    ],
)
def test_a_search_that_cannot_be_searched_is_one_line(override, said):
    with pytest.raises(ConfigError, match=said.replace("(", r"\(").replace(")", r"\)")):
        SearchSpace.parse([override])
