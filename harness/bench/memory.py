"""Memory over a long job: peak and current RSS after N controlled runs (``bench --memory``)."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.adapters import Database
from harness.bench.workloads import Log, controlled_mode, in_own_loop, run_strands


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (it never falls)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float | None:
    """This process's resident set size now; None where /proc is not there to tell."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * resource.getpagesize() / 2**20


def memory_profile(
    adapter: str, checkpoints: Sequence[int], *, pg_dsn: str | None, log: Log
) -> dict[str, Any]:
    """Peak and current RSS after each checkpoint count of controlled runs, in one event loop
    on one database, as a worker of ``racetape run`` keeps them.

    Flat means no growth per run: ``growth_kb_per_run`` is the slope of RSS between the first
    and the last checkpoint. It uses the current RSS where the system tells it, because the peak
    is the whole process's: an adapter measured earlier in the same bench can mask a later one's.
    """
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    samples: list[dict[str, Any]] = []

    async def body() -> None:
        store = await db.store()
        done = 0
        for target in sorted(set(checkpoints)):
            while done < target:
                await run_strands(store, frozenset(), controlled_mode(0, done))
                done += 1
            now, peak = rss_mb(), round(peak_rss_mb(), 1)
            sample = {"runs": done, "peak_rss_mb": peak, "rss_mb": now and round(now, 1)}
            samples.append(sample)
            log(f"{adapter}: {done} runs, RSS {sample['rss_mb']} MB, peak {peak} MB")

    try:
        in_own_loop(db, body)
    finally:
        asyncio.run(db.cleanup())
    growth = None
    if len(samples) > 1:
        first, last = samples[0], samples[-1]
        key = "rss_mb" if first["rss_mb"] is not None else "peak_rss_mb"
        growth = round((last[key] - first[key]) * 1024 / (last["runs"] - first["runs"]), 4)
    return {"samples": samples, "growth_kb_per_run": growth}
