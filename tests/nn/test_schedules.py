"""Learning-rate schedules against their formulas."""

from __future__ import annotations

import math

import pytest

from pipeline.nn import make_schedule


def test_constant_step_and_cosine_schedules():
    constant = make_schedule(name="constant", base_lr=0.1, epochs=5)
    assert [constant(e) for e in (0, 4)] == [0.1, 0.1]
    step = make_schedule(name="step", base_lr=1.0, epochs=30, step_size=10, gamma=0.5)
    assert [step(e) for e in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    cosine = make_schedule(name="cosine", base_lr=1.0, epochs=10, min_lr=0.1)
    assert cosine(0) == 1.0
    assert cosine(5) == pytest.approx(0.55)
    assert cosine(9) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.9)))


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        make_schedule(name="linear", base_lr=0.1, epochs=3)
