"""``--budget`` stops a run in progress: a run still going when the budget ends is cut there,
neither a strand, nor hung, nor a success, and the result says so; the runs before it stay."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.test_signals import Command

# Every progress write of the runner comes after many work steps: a run takes far longer than
# the budget, and is not hung within the settle timeout given.
SLOW = """
name = "slow"
description = "a run that takes long: many work steps before every progress write"
points = []

[runner]
progress = 1000
work = 1000
"""


# Worker processes take a second or more to start (inside the budget): theirs is longer.
@pytest.mark.parametrize(("workers", "budget"), [("1", "0.5"), ("2", "3")])
def test_a_run_still_going_when_the_budget_ends_is_cut_and_said_so(
    tmp_path: Path, workers: str, budget: str
) -> None:
    (tmp_path / "slow.toml").write_text(SLOW)
    started = time.monotonic()
    run = Command(tmp_path, "run", "--scenario", "slow.toml", "--runs", "3", "--budget", budget,
                  "--settle-timeout", "600", "--workers", workers, "--json", "r.json")  # fmt: skip
    try:
        code, err = run.finish(timeout=60)
    finally:
        run.process.kill()  # gone already, unless the budget failed to stop it
    assert time.monotonic() - started < 30  # the run alone takes minutes
    assert code == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    (group,) = doc["groups"]
    assert (group["runs"], group["strands"], group["hung"]) == (0, 0, 0)
    assert group["stopped"] == "budget"
    cut = [note for note in doc["notes"] if "was cut unfinished by the budget" in note]
    assert cut
    assert all(note.startswith("run ") and "slow / sqlite" in note for note in cut)
    assert list(run.tmp.iterdir()) == []
