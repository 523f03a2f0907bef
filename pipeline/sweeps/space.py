"""A sweep's search space: Hydra's override syntax turned into Optuna's distributions.

    space = SearchSpace.parse(["optimizer=nesterov,adam", "model.hidden=choice([128],[256])",
                               "optimizer.lr=tag(log, interval(1e-4, 3e-3))", "train.epochs=5"])
    space.distributions   # optimizer, model.hidden: categorical; optimizer.lr: float, log scale
    space.fixed           # ["train.epochs=5"]: the same in every trial
    space.overrides(trial.params)   # the job's overrides for one trial
    space.grid            # every choice of an all-categorical space: what the grid sampler takes

Parsed with Hydra's own override parser, so a sweep is written as any Hydra multirun is:
`a,b` and `choice(a, b)` are choices, `range(1, 5)` whole numbers (the end excluded, as Hydra
has it), `interval(0.0, 0.4)` a continuous range, `tag(log, interval(…))` one searched on a
log scale, and `tag(int, interval(…))` whole numbers in a range (log-scaled with both tags).
A later override of the same key wins (the command line over the preset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipeline.plumbing.config import ConfigError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)  # overrides without a sweep

    @classmethod
    def parse(cls, overrides: list[str]) -> SearchSpace:
        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
        except Exception as error:  # Hydra's parser says where the syntax broke
            raise ConfigError(f"cannot read the sweep's overrides: {error}") from None
        space: dict[str, BaseDistribution | str] = {}
        for override in parsed:
            key = override.get_key_element()
            space[key] = distribution(override) if override.is_sweep_override() else (
                override.input_line
            )  # fmt: skip
        return cls(
            {key: value for key, value in space.items() if not isinstance(value, str)},
            [value for value in space.values() if isinstance(value, str)],
        )

    def overrides(self, params: dict) -> list[str]:
        """The job's overrides for a trial's `params`, after the fixed ones."""
        return [*self.fixed, *(f"{key}={value}" for key, value in params.items())]

    @property
    def grid(self) -> dict[str, list] | None:
        """Each key's values, if every key is a choice (a grid); None otherwise."""
        if not all(isinstance(d, CategoricalDistribution) for d in self.distributions.values()):
            return None
        return {key: list(d.choices) for key, d in self.distributions.items()}


def distribution(override: Override) -> BaseDistribution:
    key, value = override.get_key_element(), override.value()
    if override.is_choice_sweep():
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
        start, stop, step = int(value.start), int(value.stop), int(value.step)
        if step < 1 or stop <= start:
            raise ConfigError(f"{key}: {override.input_line} holds no value Optuna can search")
        last = start + (stop - 1 - start) // step * step  # range's end is excluded, Optuna's not
        return IntDistribution(start, last, step=step)
    if override.is_interval_sweep():
        low, high, log = value.start, value.end, "log" in value.tags
        if low is None or high is None or not low < high or (log and low <= 0):
            raise ConfigError(
                f"{key}: interval({low}, {high}) is empty or, on a log scale, not above 0"
            )
        if "int" in value.tags:  # Hydra reads an interval's bounds as floats
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(f"{key}: {override.input_line} is no sweep Optuna can search")
