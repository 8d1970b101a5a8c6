"""The perturbing event loop on its own, without pytest's plugin: what it changes, what it keeps.

Each test runs its own loop through ``asyncio.Runner`` (these are sync tests on purpose: the
loop under test is the one made here, not pytest-asyncio's).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.run import execute
from harness.scenario import resolve_scenario
from racetape._engine.perturb import Perturbation, PerturbingEventLoop, derive_seed
from racetape._engine.scheduler import Scheduler
from racetape._engine.strategies import FifoStrategy, RandomStrategy, run_seed
from racetape._target import Controlled
from reftask.stores.sqlite import SqliteStore


def run(main: Callable[[], Coroutine[Any, Any, Any]], perturbation: Perturbation | None) -> Any:
    with asyncio.Runner(loop_factory=lambda: PerturbingEventLoop(perturbation)) as runner:
        return runner.run(main())


class Scripted(Perturbation):
    """A perturbation that decides as scripted: the first jobs get ``delays``, the first
    arrivals ``holds``; everything after them nothing."""

    def __init__(
        self, delays: tuple[tuple[float, float], ...] = (), holds: tuple[int, ...] = ()
    ) -> None:
        super().__init__(seed=0)
        self.planned_delays = list(delays)
        self.planned_holds = list(holds)

    def job_delays(self) -> tuple[float, float]:
        delays = self.planned_delays.pop(0) if self.planned_delays else (0.0, 0.0)
        self.jobs.append(delays)
        return delays

    def hold(self) -> int:
        turns = self.planned_holds.pop(0) if self.planned_holds else 0
        self.holds.append(turns)
        return turns


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_seed_gives_the_same_decisions_and_another_seed_others() -> None:
    def decisions(seed: int) -> tuple[list[tuple[float, float]], list[int]]:
        perturbation = Perturbation(seed)
        for _ in range(40):
            perturbation.job_delays()
            perturbation.hold()
        return perturbation.jobs, perturbation.holds

    assert decisions(11) == decisions(11)
    assert decisions(11) != decisions(12)
    jobs, holds = decisions(11)
    delays = [d for pair in jobs for d in pair]
    assert 0 < sum(1 for d in delays if d == 0) < len(delays), "some delays, not all"
    assert all(0 <= d <= 0.05 for d in delays)
    assert set(holds) <= {0, 1, 2, 3, 4}
    assert len(set(holds)) > 2


def test_derived_seeds_depend_on_every_part_and_nothing_else() -> None:
    assert derive_seed(0, "t.py::a", 3) == derive_seed(0, "t.py::a", 3)
    seeds = {derive_seed(b, n, i) for b in (0, 1) for n in ("t.py::a", "t.py::b") for i in (0, 1)}
    assert len(seeds) == 8
    assert all(0 <= s < 2**32 for s in seeds)


def test_a_held_arrival_is_overtaken_by_the_loops_own_callbacks() -> None:
    """The reordering: a hand-back (``call_soon_threadsafe``, posted here from the loop's own
    thread so that it arrives at a known moment) lands behind callbacks the loop queued after it
    arrived. Unperturbed, it runs first: it was queued first."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        finished = loop.create_future()

        def chain(n: int) -> None:
            order.append(f"loop-{n}")
            if n < 6:
                loop.call_soon(chain, n + 1)
            else:
                loop.call_later(0.01, finished.set_result, None)

        loop.call_soon_threadsafe(order.append, "hand-back")
        loop.call_soon(chain, 1)
        await finished
        return order

    unperturbed = run(main, None)
    assert unperturbed[0] == "hand-back"
    overtaken = 0
    for seed in range(12):
        order = run(main, Perturbation(seed))
        overtaken += order.index("hand-back") > order.index("loop-1")
        assert [o for o in order if o != "hand-back"] == [f"loop-{n}" for n in range(1, 7)]
    assert overtaken > 0


def test_fifo_timer_order_and_cancels_are_kept() -> None:
    """What asyncio promises stays: call_soon FIFO, one thread's hand-backs in order, an earlier
    timer before a later one, a cancelled handle never runs."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        soon: list[int] = []
        for i in range(30):
            loop.call_soon(soon.append, i)
        handed: list[int] = []

        def hand_back() -> None:
            for i in range(30):
                loop.call_soon_threadsafe(handed.append, i)

        worker = threading.Thread(target=hand_back)
        worker.start()
        fired: list[float] = []
        for i in range(60):
            when = loop.time() + 0.001 * (i % 7)
            loop.call_at(when, fired.append, when)
        cancelled_timer = loop.call_later(0.002, fired.append, -1.0)
        cancelled_soon = loop.call_soon_threadsafe(handed.append, -1)
        cancelled_timer.cancel()
        cancelled_soon.cancel()
        await asyncio.to_thread(worker.join)
        await asyncio.sleep(0.05)
        assert soon == list(range(30))
        assert handed == list(range(30))
        assert fired == sorted(fired)
        assert len(fired) == 60

    for seed in range(10):
        perturbation = Perturbation(seed)
        run(main, perturbation)
        assert any(perturbation.holds), "the holds were in play"


def test_an_arrival_waits_behind_one_released_but_not_yet_run() -> None:
    """A is held one turn; B arrives, unheld, in the very loop turn that releases A: A was
    released to the end of the ready queue, so B must queue behind it, not run at once."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        loop.call_soon_threadsafe(order.append, "A")
        loop.call_soon(loop.call_soon_threadsafe, order.append, "B")
        await asyncio.sleep(0.01)
        return order

    assert run(main, Scripted(holds=(1, 0))) == ["A", "B"]


def test_a_job_whose_awaiter_was_cancelled_during_its_delay_still_runs_later() -> None:
    """Bug 1's window: the cancel lands before the worker thread's write; the write lands after
    the canceller wrote final."""

    async def main() -> list[str]:
        tape: list[str] = []
        lock = threading.Lock()

        def write(kind: str) -> None:
            with lock:
                tape.append(kind)

        job = asyncio.create_task(asyncio.to_thread(write, "progress"))
        await asyncio.sleep(0.005)
        job.cancel()
        write("final")
        async with asyncio.timeout(2):
            while len(tape) < 2:  # noqa: ASYNC110 - written by a worker thread
                await asyncio.sleep(0.001)
        return tape

    assert run(main, None) == ["progress", "final"]
    assert run(main, Scripted(delays=((0.05, 0.0),))) == ["final", "progress"]


def test_a_delay_before_hand_back_holds_the_result_not_the_work() -> None:
    async def main() -> tuple[bool, str]:
        done = threading.Event()

        def work() -> str:
            done.set()
            return "result"

        job = asyncio.create_task(asyncio.to_thread(work))
        await asyncio.sleep(0)  # the job's task submits it: it is the first job
        await asyncio.to_thread(done.wait, 1)
        return job.done(), await job

    finished_early, result = run(main, Scripted(delays=((0.0, 0.05),)))
    assert result == "result"
    assert not finished_early, "the awaiter saw the result before the hand-back delay ended"


def test_held_callbacks_run_in_their_own_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        context = contextvars.copy_context()
        context.run(var.set, "given")
        for _ in range(20):
            loop.call_later(0, lambda: seen.append(var.get()), context=context)
        await asyncio.sleep(0.01)
        return seen

    assert run(main, Perturbation(4)) == ["given"] * 20


def test_a_callbacks_arguments_are_freed_once_it_ran_without_the_cyclic_gc() -> None:
    """Code that frees by reference count must keep working (aiosqlite's cursors: one kept alive
    keeps its statement open, and the next COMMIT on that connection fails)."""

    class Result:
        pass

    async def main() -> int:
        loop = asyncio.get_running_loop()
        refs = []
        for _ in range(30):
            future = loop.create_future()
            result = Result()
            refs.append(weakref.ref(result))
            worker = threading.Thread(
                target=loop.call_soon_threadsafe, args=(future.set_result, result)
            )
            worker.start()
            del result
            await future
            del future
            worker.join()
            loop.call_later(0, lambda: None)
        await asyncio.sleep(0.02)
        return sum(1 for ref in refs if ref() is not None)

    with no_cyclic_gc():
        assert run(main, Perturbation(3)) == 0


@pytest.mark.parametrize("perturbed", [False, True])
def test_a_job_is_wrapped_only_under_a_perturbation(perturbed: bool) -> None:
    submitted: list[object] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(Recording())
        await asyncio.to_thread(lambda: None)

    run(main, Perturbation(1) if perturbed else None)
    assert [type(job).__name__ for job in submitted] == ["_DelayedJob" if perturbed else "partial"]


def test_the_engine_names_a_delayed_job_by_what_it_runs() -> None:
    """The scheduler names to_thread actors by their function; a delayed job says what it wraps
    (``__wrapped__``), so names, and the decisions recorded by them, do not change under the
    plugin."""

    def write() -> None:
        pass

    async def main() -> None:
        await asyncio.to_thread(write)

    async def schedule() -> list[str]:
        result = await Scheduler(FifoStrategy()).run(main())
        assert result.outcome == "settled", result.problem
        return [e["actor"] for e in result.timeline if e["event"] == "spawn"]

    assert run(schedule, Scripted(delays=((0.001, 0.001),))) == ["main", "main/write1"]


def test_the_engines_decisions_do_not_depend_on_when_a_worker_thread_starts(
    tmp_path: Path,
) -> None:
    """Two fire-and-forget writes run their worker threads at once; which reaches write.enter
    first is the OS's business. Found by ``--race-runs 2`` on the catalog determinism test: the
    engine resumed actors waiting their turn in arrival order, so a thread that started late
    changed a seed's decisions (red on fb65463, fixed on main by 35b43fb: spawn order)."""
    scenario = resolve_scenario("succeed-with-writes-in-flight")

    def decisions(delays: tuple[tuple[float, float], ...], name: str) -> tuple[str, ...]:
        async def main() -> tuple[str, ...]:
            store = await SqliteStore.open(tmp_path / f"{name}.db")
            try:
                mode = Controlled(RandomStrategy(run_seed(5, 1)))
                result = await execute(store, scenario, frozenset(), mode)
                assert not result.unsettled, result.schedule.problem
                return tuple(result.schedule.choices)
            finally:
                await store.close()

        return run(main, Scripted(delays=delays))  # type: ignore[no-any-return]

    undelayed = decisions((), "undelayed")
    # Job 1: the first fire-and-forget progress write; its thread starts 40 ms late.
    assert decisions(((0.0, 0.0), (0.04, 0.0)), "late") == undelayed


@pytest.mark.parametrize("max_delay", [0.0, -1.0, 11.0])
def test_a_max_delay_out_of_range_is_refused(max_delay: float) -> None:
    with pytest.raises(ValueError, match="max_delay"):
        Perturbation(1, max_delay=max_delay)
