"""Phases (pipeline/plumbing/phases.py): each block's time counts to its innermost phase, and a
job's record says where its wall time went. A fake clock stands in for time, so the figures are
exact."""

from __future__ import annotations

import json

import pytest

from pipeline.plumbing import phases
from pipeline.plumbing.phases import move_time, phase, start_job, write_phases


class Clock:
    """Both of the module's clocks (perf_counter and time), moved by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(tmp_path, monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(phases, "time", fake)
    monkeypatch.setattr(phases, "_clock", {"job": 0.0, "previous_end": 0.0})
    monkeypatch.setattr(phases, "process_started", lambda: 990.0)  # 10 s before the clock
    monkeypatch.setenv(phases.PHASES_ENV, str(tmp_path / "phases.jsonl"))
    return fake


def records(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "phases.jsonl").read_text().splitlines()]


def test_nested_phases_count_their_time_once_to_the_innermost(clock, tmp_path):
    start_job()
    clock.wait(0.5)  # outside any phase
    with phase("epochs"):
        clock.wait(2.0)
        with phase("log: curves"):
            clock.wait(0.3)
        clock.wait(1.0)
    move_time("epochs", "scoring", 0.4)
    write_phases("sweep-job")
    (record,) = records(tmp_path)
    assert record["phases"] == pytest.approx({"epochs": 2.6, "log: curves": 0.3, "scoring": 0.4})
    assert record["job"] == pytest.approx(3.8)
    assert record["startup"] == pytest.approx(10.0)  # the process began 10 s before the job
    assert record["kind"] == "sweep-job" and record["first_in_process"] is True


def test_a_later_job_counts_its_own_phases_and_the_hand_over_as_start_up(clock, tmp_path):
    start_job()
    with phase("data"):
        clock.wait(1.0)
    write_phases("sweep-job")
    clock.wait(0.25)  # the launcher hands over the next job
    start_job()
    with phase("epochs"):
        clock.wait(3.0)
    write_phases("sweep-job")
    _, second = records(tmp_path)
    assert second["phases"] == pytest.approx({"epochs": 3.0})
    assert second["startup"] == pytest.approx(0.25) and second["first_in_process"] is False


def test_time_moved_out_of_a_phase_is_capped_at_what_it_measured(clock, tmp_path):
    start_job()
    with phase("epochs"):
        clock.wait(1.0)
    move_time("epochs", "scoring", 5.0)
    write_phases("training")
    (record,) = records(tmp_path)
    assert record["phases"] == pytest.approx({"epochs": 0.0, "scoring": 1.0})


def test_nothing_is_written_unless_asked(clock, tmp_path, monkeypatch):
    monkeypatch.delenv(phases.PHASES_ENV)
    start_job()
    with phase("data"):
        clock.wait(1.0)
    write_phases("training")
    assert not (tmp_path / "phases.jsonl").exists()
