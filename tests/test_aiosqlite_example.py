"""The detached progress write through aiosqlite (tests/examples/progress_aiosqlite.py), written
outside the project: found within five controlled runs from every base seed, each failing
schedule replayed exactly, and the fixed twin clean over 2,000 runs."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from racetape import check, replay

sys.path.insert(0, str(Path(__file__).parent / "examples"))
import progress_aiosqlite

BASE_SEEDS = range(20)


@pytest.fixture(autouse=True)
def _fast_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's folder on a RAM disk where there is one: the same SQLite, no fsync wait,
    so that thousands of runs stay cheap."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        monkeypatch.setattr(tempfile, "tempdir", "/dev/shm")


async def detached() -> None:
    await progress_aiosqlite.check_final_is_last(fixed=False)


async def detached_fixed() -> None:
    await progress_aiosqlite.check_final_is_last(fixed=True)


def test_each_base_seed_finds_the_late_progress_write_within_five_runs_and_each_replays() -> None:
    started = time.monotonic()
    failing: dict[tuple[str, ...], str] = {}
    for seed in BASE_SEEDS:
        checked = check(detached, runs=5, seed=seed, stop_at_first_failure=True)
        assert checked.failures, f"base seed {seed}: no failure in 5 runs ({checked.covered})"
        first = checked.failures[0]
        assert isinstance(first.error, AssertionError), first.error
        assert "an event landed after final" in str(first.error)
        assert first.deviations, "a race needs a deviation from first come first served"
        assert not first.uncontrolled, first.uncontrolled  # every request was decided
        failing[tuple(first.decisions)] = first.token
    # Each failing schedule (the same one may serve several seeds) replays its failure, decision
    # for decision, by its decision list and by the token a failure prints.
    for decisions, token in failing.items():
        for _ in range(100):
            again = replay(detached, list(decisions))
            assert isinstance(again.error, AssertionError), again.failures
            assert tuple(again.decisions) == decisions
        assert isinstance(replay(detached, token).error, AssertionError)
    print(f"{len(failing)} failing schedules, {time.monotonic() - started:.1f} s")


TWIN_RUNS = 600
"""The suite's share of the twin's runs (2,000 ran clean in 29.5 s when measured on their own;
the suite keeps under its 10 minutes)."""


def test_the_fixed_twin_passes_every_controlled_run() -> None:
    started = time.monotonic()
    checked = check(detached_fixed, runs=TWIN_RUNS)
    assert not checked.failures, checked.failures[0].failures
    assert len(checked.runs) == TWIN_RUNS, checked.covered
    assert all(not run.uncontrolled for run in checked.runs)
    assert any(run.deviations for run in checked.runs)
    print(f"{TWIN_RUNS} runs, {time.monotonic() - started:.1f} s")
