"""``racetape bench`` end to end at a tiny size: every figure, the ratios, the strands it finds.

No timing is asserted: speed targets live in the bench's output, never in tests.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from harness import bench
from harness.adapters import Database
from harness.oracle import check_task
from racetape import point
from racetape._control import under_controller
from reftask.models import EventKind, NewEvent
from reftask.stores.sqlite import SqliteStore
from tests.test_cli import racetape


def _dsn_args(adapter: str, request: pytest.FixtureRequest) -> list[str]:
    if adapter != "postgres":
        return []
    return ["--pg-dsn", request.getfixturevalue("postgres_server").dsn]


def test_bench_reports_every_figure_and_controlled_mode_finds_the_strand(
    adapter: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    done = racetape(
        "bench", "--adapter", adapter, "--runs", "6", "--seeds", "2", "--memory", "3,6",
        "--json", out, *_dsn_args(adapter, request),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["schema"] == "racetape.bench/1"
    assert doc["command"].startswith("racetape bench --adapter")
    assert len(doc["machine"]["load_before"]) == 3
    (result,) = doc["adapters"]
    assert result["adapter"] == adapter
    figures = result["figures"]
    assert set(figures) == set(bench.FIGURE_KEYS)
    for key, figure in figures.items():
        assert figure["runs"] == 6, key
        assert figure["seconds"] > 0, key
        assert figure["runs_per_s"] > 0, key
        assert figure["name"] in done.stdout, key
    # Fault-free, nothing strands; with the fault, every figure that can strand counts and
    # looks for its first strand, and controlled mode finds it (its seeds are fixed).
    for key in ("controlled", "jitter", "naive"):
        assert figures[key]["strands"] == 0, key
        fault = figures[f"{key}_fault"]
        assert fault["repeats"] == 2, key
        assert fault["budget"] == 6, key
        assert fault["strands"] is not None, key
        found = fault["runs_to_first_strand"]
        assert (found is None and "note" in fault) or 1 <= found <= 6, key
    controlled = figures["controlled_fault"]
    assert controlled["strands"] > 0
    assert 1 <= controlled["runs_to_first_strand"] <= 6
    assert figures["floor"]["strands"] is None
    ratios = result["ratios"]
    assert ratios["controlled_over_naive"] > 0
    assert ratios["floor_over_controlled"] > 0
    assert ratios["naive_over_controlled_runs_to_first_strand"] > 0
    samples = result["memory"]["samples"]
    assert [s["runs"] for s in samples] == [3, 6]
    assert all(s["peak_rss_mb"] > 0 for s in samples)
    assert all(s["rss_mb"] > 0 for s in samples)  # Linux: /proc is there
    assert result["memory"]["growth_kb_per_run"] is not None
    points = doc["control_points"]
    for key in ("checkpoint_ns", "checkpoint_blocking_ns", "empty_function_ns"):
        assert points[key] > 0, key
    assert "(a)/(d) throughput" in done.stdout
    says_session = any("synchronous_commit" in note for note in doc["notes"])
    assert says_session == (adapter == "postgres")


class SlowProgressStore(SqliteStore):
    """Progress appends land half a second late: after a short loop's runs were all judged."""

    async def append_event(self, task_id: str, event: NewEvent) -> int:
        if event["kind"] == EventKind.PROGRESS:
            await asyncio.sleep(0.5)
        return await super().append_event(task_id, event)


def test_the_naive_loop_judges_every_run_after_its_cancelled_writes_landed(
    tmp_path: Path,
) -> None:
    """Without the terminal guard a cancelled progress write that started lands after final:
    the loop's verdicts must be those of the tapes once every worker thread is done."""

    path = tmp_path / "tasks.db"

    async def naive() -> bench.NaiveLoop:
        store = await SlowProgressStore.open(path, faults=bench.GUARD_OFF)
        try:
            loop = await bench.naive_loop(store, 20, bench.GUARD_OFF, warmup=1)
            await asyncio.sleep(1.0)  # a late write has landed by now, drained or not
            return loop
        finally:
            await store.close()

    async def judge(task_ids: list[str]) -> list[bool]:
        store = await SqliteStore.open(path)
        try:
            verdicts = []
            for task_id in task_ids:
                row, tape = await store.get_task(task_id), await store.list_events(task_id)
                verdicts.append(bool(check_task(row, tape, runner_started=True)))
            return verdicts
        finally:
            await store.close()

    loop = asyncio.run(naive())
    settled = asyncio.run(judge(loop.task_ids))
    assert len(set(loop.task_ids)) == 20
    assert any(settled), "no cancelled write started: the loop exercised nothing"
    assert loop.stranded == settled


def test_the_floor_makes_the_store_calls_of_one_run_and_reaches_no_control_point() -> None:
    """The bare run leaves the row and tape of a run cancelled while its progress write was in
    flight, and a controller installed around it sees no control point."""

    class Recorder:
        def __init__(self) -> None:
            self.points: list[str] = []

        async def reach(self, point: str, info: dict[str, object]) -> None:
            self.points.append(point)

        def reach_blocking(self, point: str, info: dict[str, object]) -> None:
            self.points.append(point)

    async def main() -> tuple[list[str], str, list[str]]:
        db = Database.fresh("sqlite")
        recorder = Recorder()
        try:
            store = await db.store()
            with under_controller(recorder):
                task_id = await bench.bare_run(store)
                await point("probe")  # the recorder is live: it sees this one
            row, tape = await store.get_task(task_id), await store.list_events(task_id)
            return recorder.points, row.status.value, [e.kind for e in tape]
        finally:
            await db.cleanup()

    points, status, kinds = asyncio.run(main())
    assert points == ["probe"]
    assert status == "CANCELLED"
    assert kinds == ["task_started", "progress", "final"]


def test_control_point_cost_measures_points_that_do_not_suspend() -> None:
    cost = bench.control_point_cost(number=2_000, repeat=2)
    assert cost["calls_timed"] == 2_000
    for key in ("checkpoint_ns", "empty_coroutine_ns", "checkpoint_blocking_ns"):
        assert cost[key] > 0, key


def test_bad_memory_counts_are_one_line_errors(tmp_path: Path) -> None:
    for bad in ("ten", "0,100", "5,-1"):
        done = racetape("bench", "--memory", bad, "--json", tmp_path / "b.json")
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("racetape: error: --memory:"), line


def test_the_unmodified_figure_sets_the_controlled_loop_beside_plain_asyncio(
    tmp_path: Path,
) -> None:
    from harness.bench.unmodified import example_main, unmodified_figures, unmodified_line

    figure = unmodified_figures(10)
    assert figure["runs"] == 10
    assert set(figure["runs_per_s"]) == {"plain", "controlled"}
    assert figure["controlled_over_plain"] == round(
        figure["runs_per_s"]["controlled"] / figure["runs_per_s"]["plain"], 2
    )
    assert "ratio" in unmodified_line(figure)
    assert example_main(tmp_path / "missing.py") is None


@pytest.mark.postgres
def test_the_asyncpg_figure_runs_the_worker_example_plain_and_controlled(
    postgres_server: Any, tmp_path: Path
) -> None:
    from harness.bench.unmodified import asyncpg_figures, asyncpg_main, unmodified_line

    figure = asyncpg_figures(10, postgres_server.dsn)
    assert figure["runs"] == 10
    assert "worker_stop_pg.py, asyncpg" in figure["workload"]
    assert set(figure["runs_per_s"]) == {"plain", "controlled"}
    assert "ratio" in unmodified_line(figure)
    assert asyncpg_main(postgres_server.dsn, tmp_path / "missing.py") is None
