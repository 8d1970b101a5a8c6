"""The campaign: every group's runs, seeded and sharded, over the pool; their results and traces.

The main process writes the traces of the first failing runs of each group and hands back one
:class:`GroupResult` a group, from which the result document is written. ``budget`` and Ctrl-C
stop handing out runs; both keep every run that finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from harness import signals
from harness.adapters import Database
from harness.campaign.model import ALL_ADAPTERS, EnvironmentFault, Group, RunRecord, Settings
from harness.campaign.pool import Job, in_this_process, run_jobs
from harness.campaign.runs import run_exhaustive
from harness.campaign.seeds import shard_indices
from harness.files import OutputError, write_json_atomic


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


DATABASE_LOST = "database lost"
"""A group's ``stopped`` when its adapter's database became unreachable (exit code 3)."""
WORKER_LOST = "worker lost"
"""A group's ``stopped`` when a worker process died under it (exit code 3)."""


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


def _keep_one(
    keep: Callable[[Group, list[RunRecord]], None], group: Group, record: RunRecord
) -> None:
    keep(group, [record])


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

    return in_this_process(settings.pg_dsn, work)


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
