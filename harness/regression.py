"""The body of an emitted regression test: replay one embedded trace and assert the invariant.

An emitted test (see :mod:`harness.report.emit`) is three lines over
:func:`check_recorded_interleaving`, imported from the ``harness`` package's public API
(``harness.__all__``), so the files users commit survive any move of the modules behind it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import warnings
from typing import Any

from harness.adapters import adapter_named, pg_dsn_from_env
from harness.replay import replay
from harness.traces import trace_from_dict
from reftask.faults import parse_faults


def check_recorded_interleaving(
    trace_document: dict[str, Any], *, adapter: str, source: str
) -> None:
    """Replay ``trace_document`` (a ``racetape.trace/1`` document; ``source`` names it in
    errors) on ``adapter`` and raise AssertionError unless the run settles with no task stranded.

    The faults switched on are the recorded ones, unless ``RACETAPE_FAULTS`` names others
    (comma-separated, or ``none``). Postgres uses ``RACETAPE_PG_DSN`` (or the local default).
    Where the code no longer allows the recorded interleaving (a fix that took a lock does
    that), the run goes on first come, first served from there, a warning says where, and that
    run is judged.
    """
    trace = trace_from_dict(trace_document, source)
    chosen = os.environ.get("RACETAPE_FAULTS")
    if chosen is not None:
        names = [n.strip() for n in chosen.split(",") if n.strip() not in ("", "none")]
        trace = dataclasses.replace(trace, faults=parse_faults(names))
    pg_dsn = pg_dsn_from_env() if adapter_named(adapter).needs_dsn else None
    replayed = asyncio.run(replay(trace, adapter=adapter, pg_dsn=pg_dsn, lenient=True))
    result = replayed.result
    faults = ", ".join(sorted(f.value for f in trace.faults)) or "none"
    if replayed.diverged:
        warnings.warn(f"{replayed.diverged}; judged the run that followed instead", stacklevel=2)
    assert result.schedule.outcome == "settled", (
        f"the run {result.schedule.outcome} (faults: {faults}): {result.schedule.problem}"
    )
    tapes = {
        number: ", ".join(f"{e.seq}:{e.kind}" for e in tape)
        for number, tape in replayed.tapes.items()
    }
    stranded = [
        f"task {result.task_number(v.task_id)}: {v} (tape [{tapes[result.task_number(v.task_id)]}])"
        for v in result.violations
    ]
    assert not stranded, f"stranded with faults: {faults}: " + "; ".join(stranded)
