"""One signal policy for every command: SIGINT, SIGTERM and SIGHUP all mean "stop".

What a stop means (the README's exit-code table): no new work starts; the runs in flight finish
(or are abandoned after a bound); everything that finished is written; temporary folders and
schemas are removed; no worker process outlives the command; it exits ``128 + the first
signal``. No traceback.

Two ways a command hears of it:

- cooperative (``run``, ``stress``, ``matrix``: commands that keep what finished): a stop is
  only recorded; the loops that do the work poll :func:`stop_requested` between runs, so the
  runs in flight finish; one still running at :func:`wait_deadline` is abandoned (the event
  loop's main task cancelled, a worker process killed). A second signal brings the deadline
  near (:data:`HURRY_SECONDS`) and never interrupts the writing of results.
- interrupting (every other command): SIGTERM and SIGHUP act as Ctrl-C does (a
  ``KeyboardInterrupt``, or asyncio's cancellation of its main task), and the CLI turns that
  into one line and the exit code.

Before a command installs its policy (its modules importing, its arguments parsed), racetape's
dispatcher (:mod:`racetape.cli`) turns a stop into one line and ``128 + the signal``. Worker
processes start under :func:`held`: a signal sent to the process group while they import waits
until :func:`in_worker` takes it.

Invariant: :func:`received` holds every stop signal in the order it arrived, since
:func:`install`; the exit code derives from its first entry alone.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 5.0
"""How long the runs in flight get, after a first stop, to finish (a run takes milliseconds; a
hung one is cut off here, before the 10 s ``docker stop`` and CI runners allow)."""
HURRY_SECONDS = 1.0
"""... and after a second stop. Then the run in this process is cancelled, and worker
processes still running are killed; what they had finished is kept either way."""

ABANDON_SECONDS = 8.0
"""How long an interrupting command has, after SIGTERM or SIGHUP, before it is ended at once
(see :func:`_give_up`): within the 10 s ``docker stop`` and CI runners allow."""


@dataclass
class _State:
    received: list[int] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    cooperative: bool = False
    insisting: bool = False
    main_task: asyncio.Task[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None


_state = _State()


def received() -> list[int]:
    """Every stop signal received since :func:`install`, first first."""
    return list(_state.received)


def stop_requested() -> bool:
    return bool(_state.received)


def exit_code(default: int = 130) -> int:
    """``128 + the first stop signal`` (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP);
    ``default`` where a KeyboardInterrupt came without one recorded (a Ctrl-C asyncio caught)."""
    return 128 + _state.received[0] if _state.received else default


def describe() -> str:
    """``SIGTERM`` (or ``SIGTERM, then SIGINT``): what stopped the command."""
    names = [signal.Signals(s).name for s in _state.received] or ["SIGINT"]
    return ", then ".join(dict.fromkeys(names))


def wait_deadline() -> float | None:
    """The monotonic time by which worker processes must be gone, or None while not stopping."""
    if not _state.at:
        return None
    if len(_state.at) > 1:
        return min(_state.at[0] + GRACE_SECONDS, _state.at[1] + HURRY_SECONDS)
    return _state.at[0] + GRACE_SECONDS


def install(*, cooperative: bool) -> None:
    """Take SIGINT, SIGTERM and SIGHUP for this command (see the module's docstring)."""
    _state.__init__()  # type: ignore[misc]
    _state.cooperative = cooperative
    if cooperative:
        for signum in STOP_SIGNALS:
            signal.signal(signum, _cooperative)
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # asyncio.run builds on it
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _forward)
        if sys.unraisablehook is not _raise_again:
            _unraisable_before[:] = [sys.unraisablehook]
        sys.unraisablehook = _raise_again


def _raise_again(unraisable: Any) -> None:
    """A KeyboardInterrupt that Python could not raise where it came (in a garbage
    collector's callback, as Hypothesis installs one, or a ``__del__``) would be printed as a
    traceback and lost: the command would go on, and even exit 0. Raise it again, from
    another thread a moment later (not here: it would be raised inside this hook, and lost
    the same way)."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        main = threading.main_thread().ident
        assert main is not None
        again = threading.Timer(0.01, signal.pthread_kill, (main, signal.SIGINT))
        again.daemon = True
        again.start()
        return
    (_unraisable_before or [sys.__unraisablehook__])[0](unraisable)


_unraisable_before: list[Callable[[Any], object]] = []


def uninstall() -> None:
    """Give the signals back their defaults (tests call main() many times in one process)."""
    calm()
    if _unraisable_before:
        sys.unraisablehook = _unraisable_before.pop()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    _state.cooperative = False


def _record(signum: int) -> None:
    _state.received.append(signum)
    _state.at.append(time.monotonic())


def _cooperative(signum: int, frame: Any) -> None:
    _record(signum)
    loop = _state.loop
    if loop is not None:
        # The loop may be anywhere in its own code: only hand it a callback (as asyncio.Runner
        # does on Ctrl-C), which also wakes it from its wait.
        loop.call_soon_threadsafe(_abandon_at_deadline)


def _abandon_at_deadline() -> None:
    """On the loop: cancel the main task at the deadline, if it has not finished by then."""
    task, loop, deadline = _state.main_task, _state.loop, wait_deadline()
    if task is None or loop is None or deadline is None:
        return

    def abandon() -> None:
        if not task.done() and time.monotonic() >= (wait_deadline() or 0) - 0.001:
            task.cancel()

    loop.call_later(max(0.0, deadline - time.monotonic()), abandon)


def _forward(signum: int, frame: Any) -> None:
    """SIGTERM or SIGHUP, handled as whatever handles SIGINT now handles Ctrl-C. asyncio's
    handler only cancels its main task the first time, and code under test may take that
    cancellation for its own: if the command is still running :data:`HURRY_SECONDS` later, a
    second Ctrl-C follows (asyncio raises KeyboardInterrupt on it), and so on."""
    _record(signum)
    if len(_state.received) == 1:
        _state.insisting = True
        threading.Thread(target=_insist, daemon=True).start()
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _insist() -> None:
    started = time.monotonic()
    while True:
        time.sleep(HURRY_SECONDS)
        if not _state.insisting:
            return
        if time.monotonic() - started >= ABANDON_SECONDS:
            _give_up()
        _thread.interrupt_main(signal.SIGINT)


def _give_up() -> None:
    """The last resort of an interrupting command that every Ctrl-C since the stop failed to
    end (code that swallows KeyboardInterrupt, a wait in C): end the process now, in one line.
    What it made may be left; the line says so."""
    signum = _state.received[0]
    print(
        f"racetape: stopped by {signal.Signals(signum).name} (the command had not stopped"
        f" {ABANDON_SECONDS:g} s after it, and was ended at once: temporary folders or schemas"
        " may be left)",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signum)


def calm() -> None:
    """The stop has been heard (the CLI is writing its last line): no more Ctrl-C follows."""
    _state.insisting = False


T = TypeVar("T")


def run_interruptible(runner: asyncio.Runner, main: Coroutine[Any, Any, T]) -> T:
    """``runner.run(main)``, where a Ctrl-C that came during it is never lost. asyncio's handler
    cancels the main task on the first Ctrl-C, and raises KeyboardInterrupt only if the task
    then ends cancelled; code under test may take that cancellation for its own and return, and
    an interrupting command (``explore``, ``shrink``) would go on with its next run as if no
    Ctrl-C had come. The count is asyncio.Runner's own, of the Ctrl-Cs in this run."""
    result = runner.run(main)
    if getattr(runner, "_interrupt_count", 0):
        raise KeyboardInterrupt
    return result


def run_cancellable(main: Callable[[], Coroutine[Any, Any, None]]) -> bool:
    """Run ``main()`` in an event loop of its own; True if a stop cut it short. A stop cancels
    ``main``'s task (its ``finally`` blocks run: they remove what it made); a stop that came
    before it started means it never starts."""

    async def guarded() -> None:
        if stop_requested():
            return
        _state.main_task, _state.loop = asyncio.current_task(), asyncio.get_running_loop()
        try:
            await main()
        finally:
            _state.main_task = _state.loop = None

    try:
        asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return True
    return stop_requested()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Stop signals wait while this block runs in the main thread (pending, never lost: this
    process takes one as soon as the block ends, or at once on another of its threads). A
    process started here inherits the mask: it starts with them held, through its imports,
    until :func:`in_worker` sets its handlers and lets them through. Without this, a
    terminal's Ctrl-C or a CI runner's SIGTERM to the process group while a worker starts
    prints its KeyboardInterrupt traceback, or kills it before it can remove what it made.
    (multiprocessing starts its resource tracker the same way, bpo-33613.)"""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def in_worker() -> Callable[[], bool]:
    """In a worker process: a stop signal (a terminal's Ctrl-C, a CI runner's SIGTERM to the
    process group) only sets a flag, so the worker finishes the run it is in and stops; the
    parent decides the rest. Returns whether one came. The worker was started under
    :func:`held`: a signal that came while it started is taken here."""
    came: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda s, f: came.append(s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return lambda: bool(came)
