"""Seeds: which runs a shard makes, and the mode a run's seed gives it.

Run ``i`` of every group uses ``run_seed(seed, i)``, whatever the adapter, shard or worker, so
two adapters replay the same schedules and shards on different machines add up to exactly the
runs of one unsharded job (the engine's ``run_seed`` derives it, in
:func:`harness.campaign.runs.run_indices`). Shard ``k/n`` runs the indices ``i`` with
``i % n == k - 1``.
"""

from __future__ import annotations

from harness.campaign.model import Settings
from racetape._engine.strategies import per_run_strategy
from racetape._target import Controlled, Jittered, Mode


def shard_indices(runs: int, shard: tuple[int, int]) -> list[int]:
    """The indices of the ``runs`` that shard ``k/n`` makes, in order."""
    k, n = shard
    return [i for i in range(runs) if i % n == k - 1]


def mode_for(strategy: str, seed: int, settings: Settings) -> Mode:
    """The mode of a run seeded ``seed`` in a group of ``strategy``: jitter, or controlled by the
    per-run strategy that name and seed give."""
    if strategy == "jitter":
        return Jittered(
            seed, max_delay=settings.jitter_max_delay, settle_timeout=settings.settle_timeout
        )
    chosen = per_run_strategy(strategy, seed, pct_depth=settings.pct_depth)
    return Controlled(chosen, settings.settle_timeout)
