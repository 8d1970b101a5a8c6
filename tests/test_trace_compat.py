"""Traces written before the engine moved into ``src/racetape`` (by commit 50ac974, with
``racetape run ... --traces``) replay the same on this tree: the same decisions, the same
point at each (``steps``: detail, candidates, where a cancel or crash landed), the same
strands. One per kind of plan: a cancel in a write's window (late-progress), a crash
(crash-while-finishing: the restart's crash.done decision), two cancels on one task
(token-and-task-cancel, pct), a before-start cancel (prestart-cancel, exhaustive)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from harness.replay import replay
from harness.traces import load_trace

TRACES = sorted((Path(__file__).parent / "data" / "traces-before-the-move").glob("*.json"))


def test_there_is_one_trace_per_kind_of_plan() -> None:
    assert len(TRACES) == 4


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name.split("--")[0])
def test_a_trace_written_before_the_move_replays_the_same(path: Path) -> None:
    recorded = json.loads(path.read_text())
    replayed = asyncio.run(replay(load_trace(path)))
    assert replayed.result.schedule.outcome == "settled"
    assert [d.to_json() for d in replayed.result.schedule.decisions] == recorded["steps"]
    assert replayed.same_decisions
    assert not replayed.extended
    assert replayed.same_outcome
    assert recorded["outcome"]["violations"]  # each of them stranded: the fault was caught
