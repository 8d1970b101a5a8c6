"""Shrinking: a failing random run of each fault shrinks, on both adapters, to no more deviations
from first come, first served than the smallest interleaving that can be explained by hand, and
the shrunk trace replays to the same strands.

Each case's ``minimum`` was also checked against an exhaustive search of the scenario's
schedules (the fewest deviations among the schedules that strand the same way); the ``why`` says
which decisions a failing run cannot do without.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.adapters import Database
from harness.cli import main
from harness.replay import replay
from harness.run import RunResult, execute
from harness.scenario import Scenario, parse_scenario, resolve_scenario
from harness.shrink import SHRUNK_STRATEGY, ShrinkError, Shrunk, check_shrinkable, shrink_on
from harness.traces import kinds_of, load_trace, trace_document
from racetape._engine.drawn import deviations, drawn_choices
from racetape._engine.strategies import RandomStrategy, run_seed
from racetape._target import Controlled
from reftask.faults import Fault
from tests.conftest import StoreLocation

TWO_TASKS_PRESTART = {
    "name": "two-tasks-prestart",
    "description": "Two tasks; the second is cancelled before its run starts.",
    "tasks": 2,
    "runner": {"progress": 1},
    "cancel": [{"when": "before-start", "task": 2}],
}


@dataclass(frozen=True)
class Case:
    fault: Fault
    scenario: str | dict[str, Any]
    kinds: list[tuple[int, str]]
    minimum: int
    why: str

    def load(self) -> Scenario:
        if isinstance(self.scenario, dict):
            return parse_scenario(self.scenario, "<test>")
        return resolve_scenario(self.scenario)


CASES = [
    Case(
        Fault.NO_TERMINAL_GUARD, "cancel-anywhere", [(1, "final-not-last")], 5,
        "The anytime cancel waits from the start, so it is first come at every decision until"
        " it goes. It must be passed over at run.before_try, status.begin(RUNNING) and"
        " status.committed(RUNNING), or it ends the task before any write exists (3). It then"
        " lands while the task_started write is in flight; that write, parked earlier, is first"
        " come at the manager's finishing steps, whose status.committed(CANCELLED) and"
        " append.begin(final) must go ahead of it (2): final commits first and the unguarded"
        " write lands after it. 3 + 2 = 5.",
    ),
    Case(
        Fault.PRESTART_CANCEL_STRAND, TWO_TASKS_PRESTART, [(2, "stuck-nonterminal")], 0,
        "The before-start window closes when task 2's run would leave its first await, so the"
        " gate fires the cancel there in every schedule: first come, first served strands"
        " task 2, and every deviation of the random run (task 1's interleaving) is noise.",
    ),
    Case(
        Fault.FINAL_BEFORE_STATUS, "cancel-anywhere", [(1, "final-not-last")], 3,
        "As for no-terminal-guard, the waiting cancel must be passed over at the run's first"
        " three points (3) to land while the task_started write is in flight. Then first come,"
        " first served does the rest: the faulty manager appends final before it commits"
        " CANCELLED, so the write still reads RUNNING and lands after final.",
    ),
    Case(
        Fault.DOUBLE_FINAL_ON_LATE_CANCEL, "token-and-task-cancel", [(1, "missing-final")], 2,
        "Both cancels open once task_started is committed; first come, first served fires the"
        " token cancel, and the runner begins finishing CANCELLED at its next check. The task"
        " cancel must be passed over at runner.work and status.begin(CANCELLED) (2) so that it"
        " fires once CANCELLED is committed and before final: the faulty manager cancels the"
        " finishing run, cutting it off between its status and its final.",
    ),
    Case(
        Fault.UNLOCKED_APPEND, "token-and-task-cancel",
        [(1, "final-not-last"), (1, "seq-broken")], 4,
        "The run must go ahead of both waiting cancels at runner.work (1) to start its progress"
        " write, which reads max(seq) without the lock and parks in flight, where both cancels"
        " land. The manager then finishes CANCELLED, and its status.begin, status.committed and"
        " final's append.locked must go ahead of the older write (3): final takes the same seq"
        " and commits, and the write inserts its duplicate after it. 1 + 3 = 4.",
    ),
    Case(
        Fault.RESTART_SKIPS_UNFINALIZED, "crash-restart", [(1, "missing-final")], 4,
        "The crash opens once task_started is committed and, waiting, is first come at every"
        " decision after: it must be passed over at write.enter and append.locked of both"
        " progress writes (4) to fire once SUCCEEDED is committed and before final; the faulty"
        " restart_cleanup skips the terminal row, which keeps no final. Every failing schedule"
        " makes exactly these four deviations, so the random run is already minimal.",
    ),
]  # fmt: skip


def first_random_failure(
    loop: asyncio.Runner, store: Any, scenario: Scenario, faults: frozenset[Fault], case: Case
) -> tuple[int, RunResult]:
    """The first run of the random strategy (base seed 0) that strands as ``case`` says."""
    for index in range(400):
        mode = Controlled(RandomStrategy(run_seed(0, index)))
        result = loop.run(execute(store, scenario, faults, mode))
        if kinds_of(result) == case.kinds:
            return index, result
    raise AssertionError(f"no random run strands with {case.kinds} in 400")


def shrink_random_failure(case: Case, location: StoreLocation, folder: Path) -> tuple[Shrunk, Path]:
    scenario, faults = case.load(), frozenset({case.fault})
    db = Database.fresh(location.adapter, pg_dsn=location.pg_dsn)
    with asyncio.Runner() as loop:
        try:
            store = loop.run(db.store(faults))
            index, result = first_random_failure(loop, store, scenario, faults, case)
            path = folder / "random.json"
            doc = trace_document(
                scenario=scenario, adapter=location.adapter, faults=faults, strategy="random",
                seed=0, run=index, run_seed=run_seed(0, index), result=result,
            )  # fmt: skip
            path.write_text(json.dumps(doc))
            trace = load_trace(path)
            shrunk = shrink_on(loop, store, trace, location.adapter, check_shrinkable(trace))
        finally:
            loop.run(db.cleanup())
    out = folder / "shrunk.json"
    out.write_text(json.dumps(shrunk.document()))
    return shrunk, out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.fault.value)
def test_a_random_failure_shrinks_to_the_minimal_interleaving(
    case: Case, store_location: StoreLocation, tmp_path: Path
) -> None:
    shrunk, out = shrink_random_failure(case, store_location, tmp_path)
    before = deviations(shrunk.before.schedule.decisions)
    after = deviations(shrunk.after.schedule.decisions)
    assert kinds_of(shrunk.before) == kinds_of(shrunk.after) == case.kinds
    assert after <= case.minimum <= before, f"{before} -> {after}; {case.why}"

    trace = load_trace(out)
    assert trace.strategy == SHRUNK_STRATEGY
    replayed = asyncio.run(replay(trace, pg_dsn=store_location.pg_dsn))
    assert replayed.same_outcome
    assert replayed.same_decisions
    assert not replayed.extended


def test_shrinking_is_deterministic_in_its_seed(tmp_path: Path) -> None:
    """Hypothesis's shrinker makes random choices; its seed fixes them."""
    case = CASES[2]
    location = StoreLocation("sqlite", sqlite_path=tmp_path / "unused")
    first, _ = shrink_random_failure(case, location, tmp_path)
    again, _ = shrink_random_failure(case, location, tmp_path)
    assert first.after.schedule.choices == again.after.schedule.choices
    assert first.runs == again.runs


def test_a_recorded_run_translates_into_the_choices_that_make_it_again(tmp_path: Path) -> None:
    """The seed handed to Hypothesis: a budget up to the last deviation, then the indices."""
    case = CASES[0]
    scenario, faults = case.load(), frozenset({case.fault})
    db = Database.fresh("sqlite")
    with asyncio.Runner() as loop:
        try:
            store = loop.run(db.store(faults))
            _, result = first_random_failure(loop, store, scenario, faults, case)
        finally:
            loop.run(db.cleanup())
    decisions = result.schedule.decisions
    choices = drawn_choices(decisions)
    indices = [d.enabled.index(d.actor) for d in decisions if len(d.enabled) > 1]
    assert choices[0] == len(choices) - 1
    assert choices[1:] == indices[: choices[0]]
    assert all(i == 0 for i in indices[choices[0] :])
    assert sum(1 for i in choices[1:] if i) == deviations(decisions) > 0


def _trace_file(tmp_path: Path, **changes: Any) -> Path:
    scenario = resolve_scenario("late-progress")
    doc = {
        "schema": "racetape.trace/1",
        "scenario": scenario.to_toml_dict(),
        "adapter": "sqlite",
        "faults": ["no-terminal-guard"],
        "strategy": "random",
        "seed": 0,
        "run": 0,
        "run_seed": 0,
        "decisions": [],
        "outcome": {"status": "settled", "violations": [{"task": 1, "kind": "final-not-last"}]},
    }
    doc.update(changes)
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(doc))
    return path


def test_jitter_and_sound_traces_cannot_be_shrunk(tmp_path: Path) -> None:
    with pytest.raises(ShrinkError, match=r"trace\.json: strategy: a jitter trace"):
        check_shrinkable(load_trace(_trace_file(tmp_path, strategy="jitter")))
    sound = _trace_file(tmp_path, outcome={"status": "settled", "violations": []})
    with pytest.raises(ShrinkError, match=r"trace\.json: outcome: no strand"):
        check_shrinkable(load_trace(sound))


def test_racetape_shrink_prints_both_runs_and_writes_a_trace_that_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, traces = tmp_path / "result.json", tmp_path / "traces"
    main([
        "run", "--scenario", "cancel-anywhere", "--fault", "final-before-status", "--runs", "30",
        "--json", str(result), "--traces", str(traces),
    ])  # fmt: skip
    recorded = Path(json.loads(result.read_text())["groups"][0]["traces"][0])
    out = tmp_path / "small.json"
    capsys.readouterr()
    assert main(["shrink", str(recorded), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    before = doc["shrunk_from"]["deviations"]
    after = sum(1 for s in doc["steps"] if s["actor"] != s["enabled"][0])
    assert after <= 3 < before
    assert f"deviations {before} -> {after}" in printed
    assert "cancel.fire(via=task) lands task_started#1" in printed
    assert "violation (before) task 1: final-not-last" in printed
    assert "violation (after) task 1: final-not-last" in printed
    assert main(["replay", str(out)]) == 1  # it strands, the same way
    assert "replayed: same as recorded" in capsys.readouterr().out


def test_racetape_shrink_refuses_a_jitter_trace_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _trace_file(tmp_path, strategy="jitter")
    assert main(["shrink", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"racetape: error: {path}: strategy: a jitter trace")
    assert "\n" not in err
