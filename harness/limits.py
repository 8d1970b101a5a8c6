"""The documented upper bounds on every count, size and time racetape accepts, in one place.

Flags (:mod:`harness.commands`) and scenario fields (:mod:`harness.scenario`) are checked against
these before any work starts, so an absurd value is one line naming it, never a MemoryError, a
run that cannot end, or a float that is not a number. The README lists them ("Limits").
"""

from __future__ import annotations

MAX_RUNS = 1_000_000
"""Runs per group (``--runs``), run counts of ``bench --memory``, and shards (``--shard I/N``)."""
MAX_WORKERS = 64
MAX_SEEDS = 10_000
MAX_EXAMPLES = 100_000
MAX_PCT_DEPTH = 100
MAX_SECONDS = 7 * 24 * 3600.0
"""``--budget`` and ``--settle-timeout``: a week. Both must also be finite numbers (no nan, inf)."""

MAX_PROGRESS_WRITES = 1_000
"""A scenario runner's ``progress`` writes per task."""
MAX_WORK_STEPS = 1_000
"""A scenario runner's ``work`` steps before each write."""
MAX_CANCEL_PLANS = 64
"""``[[cancel]]`` tables in one scenario."""
