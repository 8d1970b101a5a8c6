"""Replaying one trace: the recorded decisions again, on the recorded adapter or another."""

from __future__ import annotations

from dataclasses import dataclass

from harness.adapters import Database
from harness.run import RunResult, execute
from harness.traces import Trace, describe_kinds, kinds_of
from racetape._engine.jitter import JITTER_MAX_DELAY
from racetape._engine.strategies import ReplayStrategy
from racetape._target import Controlled, Jittered
from reftask.models import EventRecord


@dataclass
class Replayed:
    trace: Trace
    adapter: str
    result: RunResult
    tapes: dict[int, list[EventRecord]]
    extended: bool  # the run went past the end of the recorded decisions
    diverged: str | None = None  # lenient replays: where the recording could not be followed

    @property
    def same_outcome(self) -> bool:
        """The same strand kinds on the same tasks as recorded (and neither hung)."""
        return (
            self.result.schedule.outcome == self.trace.outcome.get("status", "settled")
            and kinds_of(self.result) == self.trace.recorded_kinds()
        )

    @property
    def same_decisions(self) -> bool:
        return tuple(self.result.schedule.choices) == self.trace.decisions

    @property
    def finding(self) -> str | None:
        """On another adapter than the recording's: how the adapters disagree, if they do.

        Both adapters reach the same control points, so a decision list recorded on one replays
        on the other unless their locks differ (SQLite locks the whole file, Postgres one row):
        that, or a different outcome of the same interleaving, is a cross-adapter finding.
        """
        recorded_on = self.trace.adapter
        if self.adapter == recorded_on:
            return None
        if self.result.schedule.outcome == "diverged":
            return (
                f"the interleaving recorded on {recorded_on} cannot happen on {self.adapter}:"
                f" {self.result.schedule.problem}"
            )
        if not self.same_outcome:
            recorded = describe_kinds(self.trace.recorded_kinds())
            replayed = describe_kinds(kinds_of(self.result))
            return (
                f"adapters disagree: {recorded_on} gave {recorded}, {self.adapter} gave {replayed}"
            )
        return None


async def replay(
    trace: Trace, *, adapter: str | None = None, pg_dsn: str | None = None, lenient: bool = False
) -> Replayed:
    """Replay ``trace``; ``lenient`` goes on first come, first served where the recorded
    decisions cannot be followed (see :class:`ReplayStrategy`) instead of ending ``diverged``."""
    adapter = adapter or trace.adapter
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    try:
        store = await db.store(trace.faults)
        strategy = ReplayStrategy(trace.decisions, details=trace.details, lenient=lenient)
        mode = (
            Controlled(strategy)
            if trace.controlled
            else Jittered(trace.run_seed, max_delay=trace.jitter_max_delay or JITTER_MAX_DELAY)
        )
        result = await execute(store, trace.scenario, trace.faults, mode)
        tapes = {n: await store.list_events(t) for n, t in enumerate(result.task_ids, start=1)}
    finally:
        await db.cleanup()
    return Replayed(trace, adapter, result, tapes, strategy.extended, strategy.diverged)
