"""The controlled loop on code that carries no control point: the examples written outside the
project (tests/examples), correct programs relying on asyncio's promises, and the loop's own
rules (virtual time, worker-thread jobs, deadlock and hang reports, honest coverage)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from pathlib import Path

import pytest

from racetape import check, replay
from racetape._engine import deviations
from racetape._engine.checking import Main, run_once
from racetape._engine.deviations import (
    Deviations,
    DeviationSearch,
    ScheduleError,
    parse_schedule,
    schedule_of,
)
from racetape._engine.loop import ControlledLoop, Deadlock, Hung
from racetape._engine.schedule import Candidate

sys.path.insert(0, str(Path(__file__).parent / "examples"))
import promises
import tape_sqlite
import worker_stop

BASE_SEEDS = range(20)


async def bug_one() -> None:
    await tape_sqlite.check_final_is_last(guarded=False)


async def bug_one_fixed() -> None:
    await tape_sqlite.check_final_is_last(guarded=True)


async def lost_stop() -> None:
    await worker_stop.start_then_stop(fixed=False)


async def lost_stop_fixed() -> None:
    await worker_stop.start_then_stop(fixed=True)


@pytest.mark.parametrize(
    ("main", "error"), [(bug_one, AssertionError), (lost_stop, TimeoutError)], ids=["bug1", "stop"]
)
def test_each_base_seed_finds_the_race_within_five_runs_and_its_schedule_replays(
    main: Main, error: type[BaseException]
) -> None:
    for seed in BASE_SEEDS:
        checked = check(main, runs=5, seed=seed, stop_at_first_failure=True)
        assert checked.failures, f"base seed {seed}: no failure in 5 runs ({checked.covered})"
        first = checked.failures[0]
        assert isinstance(first.error, error), first.error
        assert first.deviations, "a race needs a deviation from first come first served"
    # The printed schedule (the last seed's) replays its failure, decision for decision.
    for _ in range(100):
        again = replay(main, first.token)
        assert isinstance(again.error, error)
        assert again.schedule.decisions == first.schedule.decisions


@pytest.mark.parametrize("main", [bug_one_fixed, lost_stop_fixed], ids=["bug1", "stop"])
def test_the_fixed_twins_pass_every_schedule_the_search_reaches_and_2000_random_runs(
    main: Main,
) -> None:
    searched = check(main, runs=2000)
    assert not searched.failures, searched.failures[0].error
    assert searched.runs, "the search ran"
    sampled = check(main, runs=2000, strategy="random")
    assert not sampled.failures, sampled.failures[0].error


@pytest.mark.parametrize("name", sorted(promises.PROGRAMS))
def test_a_correct_program_never_fails_in_2000_controlled_runs(name: str) -> None:
    checked = check(promises.PROGRAMS[name], runs=2000, strategy="random", seed=7)
    assert not checked.failures, f"{checked.failures[0].token}: {checked.failures[0].error!r}"
    assert len(checked.runs) == 2000
    assert checked.clean


def test_a_search_over_a_hand_started_thread_says_it_is_partly_uncontrolled() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        thread = threading.Thread(
            target=lambda: loop.call_soon_threadsafe(done.set_result, None), daemon=True
        )
        thread.start()
        await done
        thread.join()

    checked = check(main, runs=50, strategy="exhaustive")
    assert not checked.failures
    assert not checked.clean, "never call code clean that the loop did not control"
    assert any("thread" in what for what in checked.partly_uncontrolled), (
        checked.partly_uncontrolled
    )


def test_virtual_time_costs_no_wall_time_and_keeps_deadline_order() -> None:
    fired: list[str] = []

    async def main() -> None:
        async def sleeper(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            fired.append(name)

        await asyncio.gather(sleeper("late", 3600), sleeper("soon", 5), sleeper("now", 0))

    started = time.monotonic()
    run = run_once(main, Deviations())
    assert run.error is None
    assert time.monotonic() - started < 5
    assert fired == ["now", "soon", "late"]


def test_a_timeout_never_fires_past_a_worker_thread_job_still_running() -> None:
    """``wait_for(job, 30)`` on a job whose body takes real time: time may not skip past it."""

    def slow() -> str:
        time.sleep(0.05)
        return "ok"

    async def main() -> str:
        return await asyncio.wait_for(asyncio.to_thread(slow), 30)

    checked = check(main, runs=20, strategy="random")
    assert not checked.failures, checked.failures[0].error


def test_a_job_cancelled_while_it_waits_for_a_worker_runs_only_if_a_worker_won_the_race() -> None:
    """As with concurrent.futures: the cancel stops a queued job once it reaches the executor
    (a callback later); a worker that frees up before that takes the job, and it runs."""
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            first = loop.run_in_executor(pool, ran.append, "first")
            second = loop.run_in_executor(pool, ran.append, "second")
            second.cancel()
            await first

    outcomes = {}
    for schedule in ("fifo", "0.1"):  # the cancel reaches the pool first; the worker does
        ran.clear()
        run = replay(main, schedule)
        assert run.error is None
        outcomes[schedule] = list(ran)
    assert outcomes == {"fifo": ["first"], "0.1": ["first", "second"]}


def test_a_job_body_that_waits_on_the_loop_is_parked_not_hung() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()

        async def on_loop() -> int:
            await asyncio.sleep(0.01)
            return 41

        def body() -> int:
            return asyncio.run_coroutine_threadsafe(on_loop(), loop).result() + 1

        return await asyncio.to_thread(body)

    checked = check(main, runs=100, strategy="random")
    assert not checked.failures, checked.failures[0].error
    assert checked.clean


def test_a_lock_order_deadlock_is_a_deadlock_that_names_both_tasks_and_where_they_wait() -> None:
    async def main() -> None:
        first, second = asyncio.Lock(), asyncio.Lock()

        async def one() -> None:
            async with first:
                await asyncio.sleep(0)
                async with second:
                    pass

        async def two() -> None:
            async with second:
                await asyncio.sleep(0)
                async with first:
                    pass

        await asyncio.gather(one(), two())

    run = run_once(main, Deviations())
    assert isinstance(run.error, Deadlock), run.error
    message = str(run.error)
    for task in ("main1/one1 waits at", "main1/two1 waits at"):
        assert task in message, message
    assert message.count("Lock.acquire") == 2, message


def test_an_event_nobody_sets_is_a_deadlock_naming_where_it_waits() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    run = run_once(main, Deviations())
    assert isinstance(run.error, Deadlock)
    assert "test_loop.py" in str(run.error)


def test_an_endless_poll_is_hung_not_a_silent_spin() -> None:
    async def main() -> None:
        while True:  # noqa: ASYNC110 - the endless poll under test
            await asyncio.sleep(1)

    loop = ControlledLoop(Deviations(), max_turns=500)
    with (
        pytest.raises(Hung, match="500 loop turns"),
        asyncio.Runner(loop_factory=lambda: loop) as runner,
    ):
        runner.run(main())


def test_a_schedule_string_names_its_fix_when_it_is_malformed() -> None:
    assert parse_schedule("fifo") == ()
    assert parse_schedule("3.1-7.2") == ((3, 1), (7, 2))
    for bad in ("3", "3.0", "7.1-3.1", "x"):
        with pytest.raises(ScheduleError, match=r"e\.g\. '3\.1'|steps must ascend"):
            parse_schedule(bad)


def test_decisions_are_named_by_spawn_path_and_the_users_code_location() -> None:
    run = run_once(bug_one, Deviations(parse_schedule("3.1")))
    names = {d.actor for d in run.execution.decisions}
    assert any("tape_sqlite.py:" in name and ">job@" in name for name in names), names
    assert all("0x" not in name for name in names), "no address may name an actor"


def test_time_moves_while_the_loop_is_busy_so_a_busy_poll_reaches_its_deadline() -> None:
    async def main() -> None:
        fired = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, fired.set)
        while not fired.is_set():  # noqa: ASYNC110 - a busy poll, as some code does
            await asyncio.sleep(0)

    run = run_once(main, Deviations())
    assert run.error is None, run.error


def test_the_public_check_runs_a_coroutine_factory_on_the_loop_and_names_a_deadlock() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    checked = check(main, runs=3)
    assert checked.exhausted is True, "one schedule, and the search says it tried it"
    (run,) = checked.runs
    assert run.schedule.outcome == "deadlock"
    assert "Deadlock: nothing can happen" in run.failures[0]


def test_a_bodys_own_callbacks_run_before_its_result_is_handed_back() -> None:
    """One thread's order: what a job's body queued with call_soon_threadsafe comes first."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str] = []

        def body() -> int:
            loop.call_soon_threadsafe(seen.append, "callback")
            return 1

        await asyncio.to_thread(body)
        assert seen == ["callback"], seen

    for strategy in ("search", "random"):
        checked = check(main, runs=200, strategy=strategy)
        assert not checked.failures, checked.failures[0].failures


def test_a_busy_poll_on_a_thread_finishes_the_body_runs_within_the_horizon() -> None:
    async def main() -> None:
        future = asyncio.get_running_loop().run_in_executor(None, lambda: 42)
        while not future.done():  # noqa: ASYNC110 - a busy poll on a thread's result
            await asyncio.sleep(0)

    checked = check(main, runs=50, strategy="random")
    assert not checked.failures, checked.failures[0].failures
    assert not replay(main, "fifo").failed


def test_names_do_not_depend_on_who_drives_the_loop_so_a_decision_list_replays() -> None:
    async def main() -> None:
        await asyncio.gather(asyncio.to_thread(int), asyncio.to_thread(int))

    checked = check(main, runs=5, strategy="random")
    for run in checked.runs:
        again = replay(main, run.decisions)
        assert not again.failed, again.failures
        assert again.decisions == run.decisions


def test_a_failed_run_closes_its_runner_and_loop_instead_of_hanging() -> None:
    async def main() -> None:
        asyncio.get_running_loop().run_in_executor(None, time.sleep, 0)
        await asyncio.Event().wait()  # a deadlock, with a job still owed

    started = time.monotonic()
    run = run_once(main, Deviations())
    assert isinstance(run.error, Deadlock), run.error
    assert time.monotonic() - started < 5


def test_cancelled_timers_do_not_pile_up_in_a_long_run() -> None:
    """asyncio purges its heap once most timers are cancelled; the controlled turn does too."""
    sizes: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        live = loop.call_later(1, lambda: None)  # the heap's head stays: no head-only drop
        for _ in range(500):  # timeouts that were set and never fired, as wait_for leaves them
            loop.call_later(60, lambda: None).cancel()
        await asyncio.sleep(0)
        sizes.append(len(loop._scheduled))  # type: ignore[attr-defined]
        live.cancel()

    run = run_once(main, Deviations())
    assert run.error is None, run.error
    assert sizes == [1], sizes


def test_a_thread_started_in_the_run_under_the_ident_of_one_that_ended_is_still_foreign() -> None:
    # Thread idents are reused once a thread has ended: a thread alive when the loop was made
    # that ends, and a new one the run starts (a driver's connection thread) that takes its
    # ident, must not be taken for one that was there before, or the run is a false Deadlock.
    stop = threading.Event()
    before = threading.Thread(target=stop.wait, daemon=True)
    before.start()

    async def main() -> None:
        stop.set()
        before.join()
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def answer_later() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(done.set_result, None)

        for _ in range(50):  # until one reuses the ended thread's ident, as they soon do
            thread = threading.Thread(target=answer_later, daemon=True)
            thread.start()
            if thread.ident == before.ident:
                break
            thread.join()
        else:
            pytest.skip("no thread reused the ident of the one that ended")
        await done
        thread.join()

    checked = check(main, runs=1)
    assert not checked.failures, checked.failures[0].error


def _offer(strategy: Deviations, step: int, *offered: tuple[str, str]) -> str:
    enabled = [Candidate(actor, detail, i) for i, (actor, detail) in enumerate(offered)]
    return strategy.choose(step, enabled).actor


def test_a_held_event_lands_after_every_other_event_before_the_clock_and_then_lets_go() -> None:
    held = Deviations(holds=(0,), lenient=True)
    assert _offer(held, 0, ("a send#1", "request"), ("b send#1", "request")) == "b send#1"
    assert _offer(held, 1, ("a send#1", "request"), ("b answer#1", "answer")) == "b answer#1"
    assert _offer(held, 2, ("loop", "turn"), ("a send#1", "request")) == "loop"
    assert _offer(held, 3, ("a send#1", "request"), ("timer", "fire +1ms")) == "a send#1"
    # Landed: the hold is over, first come, first served again.
    assert _offer(held, 4, ("a send#2", "request"), ("c send#1", "request")) == "a send#2"
    # What it took replays as plain deviations, with no hold.
    assert schedule_of(held.taken) == ((0, 1), (1, 1))


def test_the_search_holds_back_a_request_while_another_connections_waits_first() -> None:
    search = DeviationSearch(seed=0)
    first = search.next_strategy()
    assert first is not None
    assert first.holds == ()
    _offer(first, 0, ("loop", "turn"), ("a body", "body"))
    _offer(first, 1, ("a send#1", "request"), ("b send#1", "request"))
    _offer(first, 2, ("a answer#1", "answer"), ("b send#1", "request"))
    search.ran(first)
    second = search.next_strategy()
    assert second is not None
    assert (second.schedule, second.holds) == ((), (1,))


def test_a_complete_search_with_holds_reaches_the_schedules_of_one_without_and_rarely_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def nothing() -> None:
        pass

    async def main() -> None:
        async def jobs(n: int) -> None:
            for _ in range(n):
                await asyncio.to_thread(nothing)

        await asyncio.gather(jobs(2), jobs(1))

    held = check(main, runs=5000)
    monkeypatch.setattr(deviations, "_holdable", lambda enabled: False)
    plain = check(main, runs=5000)
    assert held.exhausted
    assert plain.exhausted
    tokens = [run.token for run in held.runs]
    assert set(tokens) == {run.token for run in plain.runs}
    assert len(tokens) <= 1.05 * len(set(tokens)), "a hold that takes what a swap took is rare"
