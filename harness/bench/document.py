"""The whole bench: every figure of every adapter, and the JSON document
(``racetape.bench/1``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from harness.adapters import PG_SESSION, needs_dsn
from harness.bench.memory import memory_profile
from harness.bench.points import control_point_cost
from harness.bench.scaling import scaling_adapter
from harness.bench.timing import WARMUP_RUNS, bench_adapter
from harness.bench.unmodified import asyncpg_figures, unmodified_figures
from harness.bench.workloads import SCENARIO, Log


def machine_load() -> list[float]:
    """The 1, 5 and 15 minute load averages while the bench ran (timing depends on them)."""
    return [round(x, 2) for x in os.getloadavg()]


def run_bench(
    adapters: Sequence[str],
    *,
    runs: int,
    seeds: int,
    memory: Sequence[int] = (),
    scaling: int | None = None,
    pg_dsn: str | None = None,
    command: str = "racetape bench",
    log: Log = lambda line: None,
) -> dict[str, Any]:
    """Every figure of every adapter (and peak RSS after ``memory`` runs, and the scaling
    figure of a job of ``scaling`` runs, :mod:`harness.bench.scaling`): the JSON document."""
    load_before = machine_load()
    log("control points with no controller")
    control_points = control_point_cost()
    log("unmodified code: the bug-1 example, controlled and plain")
    unmodified = unmodified_figures(runs)
    unmodified_pg: dict[str, Any] | None = None
    if needs_dsn(adapters) and pg_dsn is not None:
        log("unmodified code: the asyncpg worker example, controlled and plain")
        unmodified_pg = asyncpg_figures(runs, pg_dsn)
    rendered = []
    for adapter in adapters:
        result = bench_adapter(adapter, runs=runs, seeds=seeds, pg_dsn=pg_dsn, log=log)
        entry: dict[str, Any] = {
            "adapter": adapter,
            "figures": {key: figure.to_json() for key, figure in result["figures"].items()},
            "ratios": result["ratios"],
        }
        if memory:
            entry["memory"] = memory_profile(adapter, memory, pg_dsn=pg_dsn, log=log)
        if scaling:
            entry["scaling"] = scaling_adapter(adapter, scaling, pg_dsn=pg_dsn, log=log)
        rendered.append(entry)
    return {
        "schema": "racetape.bench/1",
        "racetape": version("racetape"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "scenario": SCENARIO,
        "settings": {"runs": runs, "seeds": seeds, "warmup_runs": WARMUP_RUNS, "scaling": scaling},
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": machine_load(),
        },
        "control_points": control_points,
        "unmodified": unmodified,
        **({"unmodified_asyncpg": unmodified_pg} if unmodified_pg is not None else {}),
        "adapters": rendered,
        "notes": [
            "wall-clock timing depends on the machine and its load (see machine)",
            "runs to first strand: median over repeats, each given at most `runs` runs",
            *(
                [f"postgres sessions use {PG_SESSION} (visibility and locks unchanged)"]
                if needs_dsn(adapters)
                else []
            ),
        ],
    }
