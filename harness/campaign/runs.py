"""A group's runs, one after another, on one database: each run's record, the budget's cut, and
the wait for a database that went away.

``budget`` stops handing out runs once it is spent, and cuts a run still going then
(:class:`BudgetCut`: not counted, named in the notes). A database that goes away is waited for,
up to ``reconnect_within`` seconds; if it answers again, the run it went away in runs again from
its seed (:func:`run_indices`), else its adapter's groups end (:class:`DatabaseLost`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from harness.adapters import Database
from harness.campaign.model import BudgetCut, DatabaseLost, Group, RunRecord, Settings
from harness.campaign.seeds import mode_for
from harness.run import RunResult, execute
from harness.traces import trace_document
from harness.unpointed import POINTS_OFF, run_points_off
from racetape._engine.strategies import ExhaustiveSearch, run_seed
from racetape._target import Controlled
from reftask.dsn import redact_dsn
from reftask.stores.base import SqlTaskStore

_log = logging.getLogger(__name__)
"""What the runner says while it runs (a database that went away and came back): Python's
last-resort handler prints it on stderr, from worker processes too."""


def _record(
    group: Group, index: int, seed: int, result: RunResult, settings: Settings, keep_trace: bool
) -> RunRecord:
    kinds = tuple(sorted({str(v.kind) for v in result.violations}))
    trace = None
    if keep_trace and (kinds or result.unsettled) and group.strategy != POINTS_OFF:
        trace = trace_document(
            scenario=group.scenario,
            adapter=group.adapter,
            faults=group.faults,
            strategy=group.strategy,
            seed=settings.seed,
            run=index,
            run_seed=seed,
            result=result,
            jitter_max_delay=settings.jitter_max_delay if group.strategy == "jitter" else None,
        )
    return RunRecord(
        index,
        kinds,
        result.unsettled,
        result.schedule.problem,
        tuple(result.landings),
        len(result.schedule.decisions),
        result.elapsed,
        trace,
    )


async def run_indices(
    db: Database,
    group: Group,
    indices: Sequence[int],
    settings: Settings,
    *,
    keep_traces: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_record: Callable[[RunRecord], None] = lambda r: None,
    deadline: float | None = None,
) -> list[RunRecord]:
    """Run ``indices`` of ``group`` one after another on ``db``; stop early if asked.

    ``deadline`` (``time.monotonic()``, the end of ``--budget``): no run starts after it, and
    a run still going then is cut (:class:`BudgetCut`): a run that makes no progress for a
    long time would otherwise hold the job past its budget for as long as it takes.

    A database that goes away is waited for, up to ``settings.reconnect_within`` seconds
    (:meth:`Database.answers_again`). If it answers again, the store is opened again and the
    run it went away in runs again from its seed: it counts once, as the run that finished,
    and its record's note says so. If not, :class:`DatabaseLost` (its records: those that
    finished)."""
    # A points-off run opens its own store on its own loop: one held here, outside the run,
    # would only be a connection whose locks the run cannot see.
    store = None
    records: list[RunRecord] = []
    kept = 0  # records holding a trace; a count, not a pass over the records: one per run
    again: str | None = None  # the note of a run that runs again, the database back
    for index in indices:
        if should_stop():
            break
        seed = run_seed(settings.seed, index)
        while True:
            opening = store is None and group.strategy != POINTS_OFF
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return records  # the budget is spent: no new run
            cut = asyncio.timeout(left)
            try:
                if opening:
                    store = await db.store(group.faults)
                    opening = False
                if not db.knows_server:
                    await db.check_same_server()  # learn which one it is, before the run
                async with cut:
                    result = await _run_once(db, store, group, seed, settings)
                await db.check_same_server()
                if result.unsettled:
                    await db.check_answers()
                break
            except Exception as exc:
                if cut.expired():
                    assert left is not None
                    raise BudgetCut(
                        f"run {index} of {group.label} was cut unfinished by the budget, after"
                        f" {left:.1f}s: not judged and not counted (neither a strand, nor hung,"
                        " nor a success)",
                        records,
                    ) from None
                if not await db.went_away(exc):
                    raise
                lost = _lost(group, None if opening else index, exc, records)
                again = await _wait_for_return(
                    db, lost, settings, should_stop, None if opening else index
                )
                store = None  # closed: opened again on the way round
        record = _record(group, index, seed, result, settings, keep_trace=kept < keep_traces)
        if again is not None:
            record, again = replace(record, note=again), None
        kept += record.trace is not None
        records.append(record)
        on_record(record)
    return records


async def _run_once(
    db: Database, store: SqlTaskStore | None, group: Group, seed: int, settings: Settings
) -> RunResult:
    if group.strategy == POINTS_OFF:
        return await run_points_off(
            group.scenario,
            group.faults,
            seed,
            sqlite_path=db.sqlite_path,
            pg_dsn=db.pg_dsn,
            pg_schema=db.pg_schema,
            settle_timeout=settings.settle_timeout,
        )
    assert store is not None
    return await execute(
        store, group.scenario, group.faults, mode_for(group.strategy, seed, settings)
    )


async def _wait_for_return(
    db: Database,
    lost: DatabaseLost,
    settings: Settings,
    should_stop: Callable[[], bool],
    index: int | None,
) -> str:
    """Wait for a database that went away (``lost`` says where: in run ``index``, or while
    the store was opened); the note of the run that then runs again, or ``lost`` raised (with
    how long it was waited for) if it does not answer again within
    ``settings.reconnect_within``."""
    within = settings.reconnect_within
    if within > 0:
        _log.warning("racetape: %s; waiting up to %gs for it to answer again", lost, within)
    waited = time.monotonic()
    back = await db.answers_again(within, should_stop)
    if back is None:
        if within <= 0:
            raise lost
        waited = time.monotonic() - waited
        how = (
            f"it had not answered again when the command stopped, {waited:.1f}s later"
            if should_stop()  # a signal, or the budget's end
            else f"it did not answer again within {within:g}s"
        )
        raise DatabaseLost(f"{lost}; {how}", lost.adapter, lost.records)
    if index is None:
        _log.warning("racetape: %s answered again %.1fs later", db.adapter, back)
        return f"{lost}; it answered again {back:.1f}s later, and the store was opened again"
    _log.warning(
        "racetape: %s answered again %.1fs later; run %d runs again from its seed",
        db.adapter,
        back,
        index,
    )
    return f"{lost}; it answered again {back:.1f}s later, and run {index} ran again from its seed"


async def _open_store(db: Database, group: Group) -> SqlTaskStore:
    """The group's store; a database gone by the time it is opened is :class:`DatabaseLost`."""
    try:
        return await db.store(group.faults)
    except Exception as exc:
        if not await db.went_away(exc):
            raise
        raise _lost(group, None, exc, []) from exc


def _lost(
    group: Group, index: int | None, exc: BaseException, records: list[RunRecord]
) -> DatabaseLost:
    when = time.strftime("%H:%M:%S", time.gmtime())
    detail = redact_dsn(
        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    )
    return DatabaseLost(
        f"{group.adapter} became unreachable at {when} UTC,"
        f" {'opening the store' if index is None else f'in run {index}'} of {group.label}"
        f" ({detail})",
        group.adapter,
        records,
    )


async def run_exhaustive(
    db: Database,
    group: Group,
    settings: Settings,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_record: Callable[[RunRecord], None] = lambda r: None,
) -> tuple[list[RunRecord], bool]:
    """Exhaustive mode: every schedule, depth first, up to ``settings.runs`` of them.

    Returns the records (run ``i`` is the ``i``-th schedule) and whether the space was exhausted.
    """
    store = await _open_store(db, group)
    records: list[RunRecord] = []
    kept = 0  # records holding a trace (see run_indices)
    search = ExhaustiveSearch()
    while len(records) < settings.runs and not should_stop():
        strategy = search.next_strategy()
        if strategy is None:
            break
        try:
            result = await execute(
                store, group.scenario, group.faults, Controlled(strategy, settings.settle_timeout)
            )
            if result.unsettled:
                await db.check_answers()
        except Exception as exc:
            if not await db.went_away(exc):
                raise
            raise _lost(group, len(records), exc, records) from exc
        record = _record(
            group, len(records), 0, result, settings, keep_trace=kept < settings.max_traces
        )
        if record.trace is not None:
            kept += 1
            record.trace["decision_indices"] = [i for i, _ in strategy.taken]
        records.append(record)
        on_record(record)
        if result.schedule.outcome == "diverged":
            break
        search.ran(strategy)
    return records, search.exhausted
