"""``racetape bench``'s figures for code with no control point: the controlled loop's own cost.

Two workloads written outside the project, each its fixed twin, so every run goes to the end:

* ``tests/examples/tape_sqlite.py`` (bug 1): submit, wait for ``started``, cancel, read the tape,
  through ``asyncio.to_thread`` and the standard ``sqlite3`` module;
* ``tests/examples/worker_stop_pg.py`` through asyncpg (with a Postgres): a worker registers
  itself with one query, the test polls with a 1 ms sleep and stops it; every send and read of
  the connection is a decision, and the loop waits for each of the server's answers.

Two figures each, measured in interleaved rounds so that the machine's load falls on both alike:

* plain: the test's coroutine under ``asyncio.run``, as plain pytest runs it;
* controlled: the same coroutine on :class:`~racetape._engine.loop.ControlledLoop`, one seeded
  ``random`` schedule a run.

The ratio controlled/plain is the figure (target: at least 1/1.5). An example is read from the
checkout; where it is missing (an installed racetape), the figure says so and is left out.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from racetape._engine.checking import run_once
from racetape._engine.strategies import RandomStrategy

EXAMPLES = Path(__file__).resolve().parents[2] / "tests" / "examples"
EXAMPLE = EXAMPLES / "tape_sqlite.py"
ASYNCPG_EXAMPLE = EXAMPLES / "worker_stop_pg.py"
ROUNDS = 5

Main = Callable[[], Coroutine[Any, Any, Any]]


def _load(path: Path) -> Any:
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"racetape_bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_main(path: Path = EXAMPLE) -> Main | None:
    """The bug-1 fixed twin's coroutine factory, or None where the example is not on disk."""
    module = _load(path)
    if module is None:
        return None
    check: Callable[..., Coroutine[Any, Any, Any]] = module.check_final_is_last
    return lambda: check(guarded=True)


def asyncpg_main(dsn: str, path: Path = ASYNCPG_EXAMPLE) -> Main | None:
    """The asyncpg worker's fixed twin against ``dsn``, or None where it is not on disk."""
    module = _load(path)
    if module is None:
        return None
    module.DSN = dsn
    stop: Callable[..., Coroutine[Any, Any, Any]] = module.start_then_stop
    return lambda: stop("asyncpg", fixed=True)


def asyncpg_figures(runs: int, dsn: str) -> dict[str, Any]:
    """:func:`unmodified_figures` of the asyncpg example."""
    main = asyncpg_main(dsn)
    if main is None:
        return {"skipped": f"the example {ASYNCPG_EXAMPLE} is not on disk (run in a checkout)"}
    figure = unmodified_figures(runs, main=main)
    figure["workload"] = "tests/examples/worker_stop_pg.py, asyncpg, fixed (lost stop's twin)"
    return figure


def unmodified_figures(runs: int, *, main: Main | None = None) -> dict[str, Any]:
    """Runs per second, plain and controlled, side by side; ``runs`` of each in all."""
    main = main or example_main()
    if main is None:
        return {"skipped": f"the example {EXAMPLE} is not on disk (run the bench in a checkout)"}
    per_round = max(1, runs // ROUNDS)
    seconds = {"plain": 0.0, "controlled": 0.0}
    done = 0
    for _ in range(2):  # warm-up: imports, the first thread, the file system's caches
        asyncio.run(main())
        run_once(main, RandomStrategy(0))
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(per_round):
            asyncio.run(main())
        seconds["plain"] += time.perf_counter() - started
        started = time.perf_counter()
        for i in range(per_round):
            failed = run_once(main, RandomStrategy(done + i)).error
            if failed is not None:
                raise RuntimeError(f"the fixed twin failed under control: {failed!r}")
        seconds["controlled"] += time.perf_counter() - started
        done += per_round
    rates = {key: round(done / value, 1) for key, value in seconds.items()}
    return {
        "workload": "tests/examples/tape_sqlite.py, guarded (bug 1's fixed twin)",
        "runs": done,
        "runs_per_s": rates,
        "controlled_over_plain": round(rates["controlled"] / rates["plain"], 2),
        "target": ">= 0.67 (1/1.5)",
    }


def unmodified_line(figure: dict[str, Any]) -> str:
    if "skipped" in figure:
        return f"unmodified code: skipped: {figure['skipped']}"
    if "error" in figure:
        return f"unmodified code: not measured: {figure['error']}"
    rates = figure["runs_per_s"]
    return (
        f"unmodified code ({figure['workload']}): controlled {rates['controlled']} runs/s,"
        f" plain {rates['plain']} runs/s, ratio {figure['controlled_over_plain']}"
        f" (target {figure['target']})"
    )
