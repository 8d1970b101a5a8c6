"""Many runs: groups of (scenario, adapter, faults, strategy), seeded, sharded, spread over workers.

Seeds: run ``i`` of every group uses ``run_seed(seed, i)``, whatever the adapter, shard or
worker, so two adapters replay the same schedules and shards on different machines add up to
exactly the runs of one unsharded job. Shard ``k/n`` runs the indices ``i`` with
``i % n == k - 1``.

Each worker process keeps one database per adapter for all of its runs (task ids are fresh per
run) and returns small per-run records; the main process writes the traces of the first failing
runs of each group and the result document. ``budget`` stops handing out runs once it is spent,
and cuts a run still going then (:class:`BudgetCut`: not counted, named in the notes); Ctrl-C
stops handing out runs the same way; both keep every run that finished. A database that goes
away is waited for, up to ``reconnect_within`` seconds; if it answers again, the run it went
away in runs again from its seed (:func:`run_indices`), else its adapter's groups end
(:class:`DatabaseLost`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from harness import signals
from harness.adapters import RECONNECT_WITHIN, Database, drop_schemas, schema_prefix
from harness.files import OutputError, write_json_atomic
from harness.run import RunResult, execute
from harness.scenario import Scenario
from harness.traces import trace_document
from harness.unpointed import POINTS_OFF, run_points_off
from racetape._engine.jitter import JITTER_MAX_DELAY
from racetape._engine.strategies import ExhaustiveSearch, per_run_strategy, run_seed
from racetape._target import Controlled, Jittered, Mode
from reftask.dsn import redact_dsn
from reftask.faults import Fault, fault_set_label
from reftask.stores.base import SqlTaskStore

_log = logging.getLogger(__name__)
"""What the runner says while it runs (a database that went away and came back): Python's
last-resort handler prints it on stderr, from worker processes too."""


@dataclass(frozen=True)
class Group:
    scenario: Scenario
    adapter: str
    faults: frozenset[Fault]
    strategy: str

    @property
    def fault_label(self) -> str:
        return fault_set_label(self.faults)

    @property
    def label(self) -> str:
        return f"{self.scenario.name} / {self.adapter} / {self.fault_label} / {self.strategy}"

    @property
    def slug(self) -> str:
        return f"{self.scenario.name}--{self.adapter}--{self.fault_label}--{self.strategy}"


@dataclass(frozen=True)
class Settings:
    runs: int = 200
    seed: int = 0
    workers: int = 1
    shard: tuple[int, int] = (1, 1)
    budget: float | None = None
    settle_timeout: float = 10.0
    pct_depth: int = 3
    jitter_max_delay: float = JITTER_MAX_DELAY
    max_traces: int = 5
    traces_dir: Path = Path("reports/traces")
    pg_dsn: str | None = None
    reconnect_within: float = RECONNECT_WITHIN


@dataclass(frozen=True)
class RunRecord:
    """What the main process keeps of one run (small, picklable)."""

    index: int
    kinds: tuple[str, ...]
    hung: bool
    problem: str | None
    landings: tuple[str, ...]
    steps: int
    elapsed: float
    trace: dict[str, Any] | None = None
    note: str | None = None
    """Said of this run in the result's notes: it ran again after the database came back."""

    @property
    def stranded(self) -> bool:
        return bool(self.kinds)


class EnvironmentFault(Exception):
    """The environment failed mid-run, not the code under test (exit 3): the run it happened
    in is not counted (its outcome cannot be judged); the ``records`` finished before it are
    kept. ``adapter`` is the adapter whose groups it ends, or None for all of them. Picklable,
    so a worker process can raise it."""

    def __init__(self, message: str, adapter: str | None, records: list[RunRecord]) -> None:
        super().__init__(message, adapter, records)
        self.message, self.adapter, self.records = message, adapter, records

    def __str__(self) -> str:
        return self.message


class BudgetCut(Exception):
    """``--budget`` ran out in the middle of a run, which was cut there: it is not judged and
    not counted (neither a strand, nor hung, nor a success); the ``records`` finished before
    it are kept, and ``message`` goes into the result's notes. Picklable, so a worker
    process can raise it."""

    def __init__(self, message: str, records: list[RunRecord]) -> None:
        super().__init__(message, records)
        self.message, self.records = message, records

    def __str__(self) -> str:
        return self.message


class DatabaseLost(EnvironmentFault):
    """The database of ``adapter`` became unreachable."""


class WorkerLost(EnvironmentFault):
    """A worker process died (killed from outside, or by the kernel for want of memory): the
    pool is broken, and the runs it had in hand are lost with it."""


@dataclass
class GroupResult:
    group: Group
    records: list[RunRecord] = field(default_factory=list)
    elapsed: float = 0.0
    stopped: str | None = None
    exhausted: bool | None = None
    traces: list[str] = field(default_factory=list)
    # (run index, position in records) of every record still holding a trace, sorted.
    _traced: list[tuple[int, int]] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)

    def add(self, record: RunRecord, max_traces: int) -> None:
        """Keep ``record``, and its time. Of the traces, only those of the ``max_traces`` lowest
        run indices stay (the ones :func:`_write_traces` writes): every job keeps its own first
        failing runs' traces, and without this a long failing job would hold a trace document
        for every chunk it ran, its memory growing with the runs before."""
        if record.trace is not None:
            self._traced.append((record.index, len(self.records)))
            self._traced.sort()
            if len(self._traced) > max_traces:
                _, position = self._traced.pop()
                if position == len(self.records):
                    record = replace(record, trace=None)
                else:
                    self.records[position] = replace(self.records[position], trace=None)
        self.records.append(record)
        self.elapsed += record.elapsed
        if record.note is not None:
            self.notes.append(record.note)


def shard_indices(runs: int, shard: tuple[int, int]) -> list[int]:
    k, n = shard
    return [i for i in range(runs) if i % n == k - 1]


def mode_for(strategy: str, seed: int, settings: Settings) -> Mode:
    if strategy == "jitter":
        return Jittered(
            seed, max_delay=settings.jitter_max_delay, settle_timeout=settings.settle_timeout
        )
    chosen = per_run_strategy(strategy, seed, pct_depth=settings.pct_depth)
    return Controlled(chosen, settings.settle_timeout)


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


# -- jobs: in this process or over worker processes ------------------------------------------


@dataclass(frozen=True)
class Job:
    """Run ``indices`` of ``group`` with ``settings`` (the seed they derive from is its seed)."""

    group: Group
    settings: Settings
    indices: tuple[int, ...]
    keep_traces: int = 0
    deadline: float | None = None  # the budget's end (time.monotonic(): one clock per machine)


OnRecords = Callable[[Job, list[RunRecord]], None]
OnLost = Callable[[EnvironmentFault], None]
OnCut = Callable[[Job, BudgetCut], None]


class EventLike(Protocol):
    def is_set(self) -> bool: ...


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int,
    pg_dsn: str | None,
    on_records: OnRecords,
    should_stop: Callable[[], bool] = lambda: False,
    on_lost: OnLost | None = None,
    on_cut: OnCut = lambda job, cut: None,
) -> bool:
    """Run every job (in order, or spread over ``workers`` processes); ``on_records`` hears of
    every finished run. Stops handing out work once ``should_stop`` says so. Returns True if
    a stop signal cut it short; what finished was reported either way.

    A database that becomes unreachable (:class:`DatabaseLost`) ends that adapter's jobs: the
    runs that finished are reported, then ``on_lost`` hears of it, and the other adapters'
    jobs go on. Without ``on_lost`` it is raised, once the other jobs are done. A run cut by
    the budget (:class:`BudgetCut`, a job's ``deadline``): ``on_cut`` hears of it."""
    lost: list[EnvironmentFault] = []

    def lose(exc: EnvironmentFault) -> None:
        lost.append(exc)
        if on_lost is not None:
            on_lost(exc)

    if workers > 1:
        stopped = _jobs_in_pool(jobs, workers, pg_dsn, on_records, should_stop, lose, on_cut)
    else:
        stopped = _jobs_in_process(jobs, pg_dsn, on_records, should_stop, lose, on_cut)
    if lost and on_lost is None:
        raise lost[0]
    return stopped


def _jobs_in_process(
    jobs: Sequence[Job],
    pg_dsn: str | None,
    on_records: OnRecords,
    should_stop: Callable[[], bool],
    on_lost: OnLost,
    on_cut: OnCut,
) -> bool:
    def stop() -> bool:
        return should_stop() or signals.stop_requested()

    async def work(database: Callable[[str], Database]) -> None:
        lost: set[str] = set()
        for job in jobs:
            if stop():
                break
            if job.group.adapter in lost or ALL_ADAPTERS in lost:
                continue
            try:
                await run_indices(
                    database(job.group.adapter),
                    job.group,
                    job.indices,
                    job.settings,
                    keep_traces=job.keep_traces,
                    should_stop=stop,
                    on_record=_reporter(on_records, job),
                    deadline=job.deadline,
                )
            except EnvironmentFault as exc:  # its records were reported one by one already
                lost.add(exc.adapter or ALL_ADAPTERS)
                on_lost(exc)
            except BudgetCut as cut:  # the same
                on_cut(job, cut)

    return _in_this_process(pg_dsn, work)


def _in_this_process(
    pg_dsn: str | None, work: Callable[[Callable[[str], Database]], Awaitable[None]]
) -> bool:
    """Run ``work`` in an event loop of its own, handing it this process's database for an
    adapter (made on first use, removed at the end); True if Ctrl-C stopped it."""

    async def main() -> None:
        dbs: dict[str, Database] = {}
        try:
            await work(lambda adapter: _database(dbs, adapter, pg_dsn))
        finally:
            for db in dbs.values():
                await db.cleanup()

    return signals.run_cancellable(main)


def _database(
    dbs: dict[str, Database], adapter: str, pg_dsn: str | None, pg_prefix: str = "racetape_"
) -> Database:
    """The database this process uses for ``adapter``, made on first use."""
    if adapter not in dbs:
        dbs[adapter] = Database.fresh(adapter, pg_dsn=pg_dsn, pg_prefix=pg_prefix)
    return dbs[adapter]


def _reporter(on_records: OnRecords, job: Job) -> Callable[[RunRecord], None]:
    return lambda record: on_records(job, [record])


def _keep_one(
    keep: Callable[[Group, list[RunRecord]], None], group: Group, record: RunRecord
) -> None:
    keep(group, [record])


_worker_dbs: dict[str, Database] = {}
_worker_loop: asyncio.Runner | None = None
_worker_pg_dsn: str | None = None
_worker_pg_prefix = "racetape_"
_worker_stop_checks: list[Callable[[], bool]] = []


def _worker_should_stop() -> bool:
    return any(check() for check in _worker_stop_checks)


def _worker_init(
    pg_dsn: str | None, stop: EventLike, parent: int, temp_root: str, pg_prefix: str
) -> None:
    """A worker stops before its next run once the parent says so (``stop``), once a stop
    signal reaches it (the parent decides the rest), or once the parent is gone: no worker
    outlives the parent by more than the run it is in (:func:`_watch_parent`). Its SQLite
    folders go under ``temp_root``, and its Postgres schemas' names start with
    ``pg_prefix``: the parent removes both whatever became of the worker."""
    global _worker_loop, _worker_pg_dsn, _worker_pg_prefix
    _worker_stop_checks[:] = [stop.is_set, signals.in_worker(), lambda: os.getppid() != parent]
    _worker_loop = asyncio.Runner()
    _worker_pg_dsn, _worker_pg_prefix = pg_dsn, pg_prefix
    tempfile.tempdir = temp_root
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    # Worker processes leave through os._exit: atexit hooks never run there, Finalize does.
    multiprocessing.util.Finalize(None, _worker_exit, exitpriority=10)


_worker_busy = threading.Event()  # set while a job runs on the worker's loop


def _watch_parent(parent: int) -> None:
    """A worker whose parent is gone (SIGKILL, a crash) would wait for its next job forever:
    the pool's queues have no other writer to close them. Once the job in hand is done (the
    stop checks see the parent gone, so it ends after its current run) or the grace is spent,
    remove this worker's databases and leave."""
    while os.getppid() == parent:
        time.sleep(0.5)
    give_up = time.monotonic() + signals.GRACE_SECONDS
    while _worker_busy.is_set() and time.monotonic() < give_up:
        time.sleep(0.05)
    if not _worker_busy.is_set():  # the stores are closed between jobs: only the files remain
        for db in _worker_dbs.values():
            with contextlib.suppress(Exception):
                asyncio.run(db.cleanup())
    os._exit(0)


def _worker_exit() -> None:
    if _worker_loop is None:
        return
    for db in _worker_dbs.values():
        _worker_loop.run(db.cleanup())
    _worker_loop.close()


def _worker_job(job: Job) -> list[RunRecord]:
    assert _worker_loop is not None
    adapter = job.group.adapter
    db = _database(_worker_dbs, adapter, _worker_pg_dsn, _worker_pg_prefix)

    async def run() -> list[RunRecord]:
        try:
            return await run_indices(
                db,
                job.group,
                job.indices,
                job.settings,
                keep_traces=job.keep_traces,
                should_stop=_worker_should_stop,
                deadline=job.deadline,
            )
        finally:
            # aiosqlite's connection threads are not daemons: left open between jobs, they
            # would keep the worker alive at exit, before any exit hook could close them.
            await db.close_stores()

    _worker_busy.set()
    try:
        return _worker_loop.run(run())
    finally:
        _worker_busy.clear()


def _jobs_in_pool(
    jobs: Sequence[Job],
    workers: int,
    pg_dsn: str | None,
    on_records: OnRecords,
    should_stop: Callable[[], bool],
    on_lost: OnLost,
    on_cut: OnCut,
) -> bool:
    """Jobs over worker processes. A stop signal (:mod:`harness.signals`) stops handing out
    jobs, drops those not started, tells the workers to stop after the run they are in, and
    waits for them until :func:`harness.signals.wait_deadline` (a second signal brings it
    near); a worker still running then is killed. What every worker finished is reported."""
    waiting = list(jobs)
    busy: dict[cf.Future[list[RunRecord]], Job] = {}
    context = multiprocessing.get_context("spawn")
    # The first Event starts multiprocessing's resource tracker: it ignores SIGINT and SIGTERM
    # but not SIGHUP, which killed it, and the tracker started in its place then printed a
    # KeyError traceback for every name it was never told of. Started under held(), it keeps
    # SIGHUP held for its life.
    with signals.held():
        stop = context.Event()
    temp_root, pg_prefix = tempfile.mkdtemp(prefix="racetape-workers-"), schema_prefix()
    pool = cf.ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(pg_dsn, stop, os.getpid(), temp_root, pg_prefix),
    )
    killed = False

    lost: set[str] = set()

    def collect(done: set[cf.Future[list[RunRecord]]]) -> None:
        for future in done:
            job = busy.pop(future)
            if future.cancelled():
                continue
            try:
                records = future.result()
            except EnvironmentFault as exc:
                on_records(job, exc.records)
                if (exc.adapter or ALL_ADAPTERS) not in lost:
                    lost.add(exc.adapter or ALL_ADAPTERS)
                    on_lost(exc)
                waiting[:] = [j for j in waiting if j.group.adapter not in lost]
                continue
            except BudgetCut as cut:
                on_records(job, cut.records)
                on_cut(job, cut)
                continue
            on_records(job, records)

    try:
        while waiting or busy:
            stopping = signals.stop_requested()
            if stopping and not stop.is_set():
                stop.set()
                waiting.clear()
                for future in busy:
                    future.cancel()  # only those no worker has started
            while waiting and len(busy) < workers * 2 and not should_stop():
                job = waiting.pop(0)
                with signals.held():  # a submit may start a worker process (signals.held)
                    busy[pool.submit(_worker_job, job)] = job
            if not busy:
                break
            deadline = signals.wait_deadline()
            if deadline is not None and time.monotonic() >= deadline:
                killed = True
                break
            done, _ = cf.wait(busy, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
            collect(done)
    except cf.process.BrokenProcessPool:
        killed = True  # what the workers finished before is kept
        on_lost(
            WorkerLost(
                "a worker process died (killed from outside, or out of memory); the runs it"
                " had in hand are lost",
                None,
                [],
            )
        )
    finally:
        if killed:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=not killed, cancel_futures=True)
        shutil.rmtree(temp_root, ignore_errors=True)  # what a killed worker could not remove
        if killed and pg_dsn is not None:
            asyncio.run(drop_schemas(pg_dsn, pg_prefix))  # the same
    return signals.stop_requested()


DATABASE_LOST = "database lost"
"""A group's ``stopped`` when its adapter's database became unreachable (exit code 3)."""
WORKER_LOST = "worker lost"
"""A group's ``stopped`` when a worker process died under it (exit code 3)."""
ALL_ADAPTERS = "*"
POLL_SECONDS = 0.2
"""How often the main process looks for a stop while it waits for workers."""


# -- racetape run --------------------------------------------------------------------------------


class Progress:
    """What the runner tells whoever shows progress (the CLI); these defaults show nothing."""

    def start(self, total: int, budget: float | None = None) -> None:
        """``total`` runs are asked for; under a ``budget`` (seconds) that is a cap."""

    def advance(self, group: Group, record: RunRecord) -> None: ...

    def finish(self) -> None: ...


def run_groups(
    groups: Sequence[Group], settings: Settings, progress: Progress | None = None
) -> list[GroupResult]:
    """Run every group; returns what finished even when stopped by the budget or Ctrl-C."""
    progress = progress or Progress()
    indices = shard_indices(settings.runs, settings.shard)
    total = sum(settings.runs if g.strategy == "exhaustive" else len(indices) for g in groups)
    results = {g: GroupResult(g) for g in groups}
    started = time.monotonic()

    def over_budget() -> bool:
        return settings.budget is not None and time.monotonic() - started >= settings.budget

    def keep(group: Group, records: list[RunRecord]) -> None:
        # The time spent in the group's own runs: groups take turns (and workers run side by
        # side), so the wall time from a group's first run to its last says nothing of it.
        for record in records:
            results[group].add(record, settings.max_traces)
            progress.advance(group, record)

    progress.start(total, settings.budget)
    interrupted = False
    lost: dict[str, str] = {}  # adapter: how its database was lost

    def note_lost(exc: EnvironmentFault) -> None:
        lost.setdefault(exc.adapter or ALL_ADAPTERS, exc.message)

    try:
        exhaustive = [g for g in groups if g.strategy == "exhaustive"]
        interrupted = _run_exhaustive_groups(exhaustive, settings, results, keep, over_budget, lost)
        if not interrupted:
            interrupted = run_jobs(
                spread_jobs(
                    groups,
                    indices,
                    settings,
                    None if settings.budget is None else started + settings.budget,
                ),
                workers=settings.workers,
                pg_dsn=settings.pg_dsn,
                on_records=lambda job, records: keep(job.group, records),
                should_stop=over_budget,
                on_lost=note_lost,
                on_cut=lambda job, cut: results[job.group].notes.append(cut.message),
            )
    finally:
        progress.finish()
    for result in results.values():
        result.records.sort(key=lambda r: r.index)
        planned = settings.runs if result.group.strategy == "exhaustive" else len(indices)
        if len(result.records) < planned and not result.exhausted:
            if result.group.adapter in lost:
                result.stopped = DATABASE_LOST
                result.notes.append(lost[result.group.adapter])
            elif ALL_ADAPTERS in lost:
                result.stopped = WORKER_LOST
                result.notes.append(lost[ALL_ADAPTERS])
            elif interrupted:
                result.stopped = "interrupted"
            else:
                result.stopped = "budget" if over_budget() else None
        result.traces = _write_traces(result, settings)
    return [results[g] for g in groups]


def spread_jobs(
    groups: Sequence[Group],
    indices: Sequence[int],
    settings: Settings,
    deadline: float | None = None,
) -> list[Job]:
    """The per-run groups' ``indices`` in chunks, handed out one group after another in turn;
    each job cuts a run still going at ``deadline`` (the budget's end).

    In turn, so that a budget that runs out leaves every group with about as many runs as the
    others, not the last groups with none.
    """
    size = max(1, min(25, len(indices) // (settings.workers * 4) or 1))
    if settings.budget is not None:
        size = min(size, 5)  # small rounds, so that a short budget reaches every group
    return [
        Job(group, settings, tuple(indices[i : i + size]), settings.max_traces, deadline)
        for i in range(0, len(indices), size)
        for group in groups
        if group.strategy != "exhaustive"
    ]


def _run_exhaustive_groups(
    groups: Sequence[Group],
    settings: Settings,
    results: dict[Group, GroupResult],
    keep: Callable[[Group, list[RunRecord]], None],
    over_budget: Callable[[], bool],
    lost: dict[str, str],
) -> bool:
    if not groups:
        return False

    async def work(database: Callable[[str], Database]) -> None:
        for group in groups:
            if signals.stop_requested():
                break
            if group.adapter in lost:
                continue
            try:
                _, exhausted = await run_exhaustive(
                    database(group.adapter),
                    group,
                    settings,
                    should_stop=lambda: over_budget() or signals.stop_requested(),
                    on_record=partial(_keep_one, keep, group),
                )
            except EnvironmentFault as exc:
                lost.setdefault(exc.adapter or ALL_ADAPTERS, exc.message)
                continue
            results[group].exhausted = exhausted

    return _in_this_process(settings.pg_dsn, work)


def _write_traces(result: GroupResult, settings: Settings) -> list[str]:
    """Write the group's first failing traces; the paths written. A trace that cannot be
    written (a full disk) is a note on the group, never the loss of the result itself."""
    written = []
    failing = [r for r in result.records if r.trace is not None]
    for record in failing[: settings.max_traces]:
        path = settings.traces_dir / f"{result.group.slug}--run{record.index}.json"
        assert record.trace is not None
        try:
            write_json_atomic(path, record.trace)
        except OutputError as exc:
            result.notes.append(f"{result.group.label}: traces not kept: {exc}")
            break
        written.append(str(path))
    return written
