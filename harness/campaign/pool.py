"""Jobs (runs of a group) in this process, or spread over worker processes.

Each worker process keeps one database per adapter for all of its runs (task ids are fresh per
run) and returns small per-run records to the main process. A stop signal stops handing out
jobs; the runs in flight finish, and every run that finished is kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import multiprocessing
import multiprocessing.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness import signals
from harness.adapters import Database, drop_schemas, schema_prefix
from harness.campaign.model import (
    ALL_ADAPTERS,
    BudgetCut,
    EnvironmentFault,
    Group,
    RunRecord,
    Settings,
    WorkerLost,
)
from harness.campaign.runs import run_indices


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

    return in_this_process(pg_dsn, work)


def in_this_process(
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


POLL_SECONDS = 0.2
"""How often the main process looks for a stop while it waits for workers."""
