"""One run of unmodified asyncio code on a fresh controlled loop, its end caught and kept.

:func:`run_once` is what the library's ``check`` (``racetape._check``) calls for a coroutine
factory, once per run: ``main()`` runs under ``asyncio.Runner`` on a new
:class:`~racetape._engine.loop.ControlledLoop` with the strategy given. A run fails when
``main()`` raises (an ``AssertionError`` of the code's own checks, a ``TimeoutError``, ...), or
when the loop reports a :class:`~racetape._engine.loop.Deadlock` or
:class:`~racetape._engine.loop.Hung`; the exception is kept on the :class:`LoopRun`, never
raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from racetape._engine.loop import HORIZON, SETTLE_TIMEOUT, ControlledLoop, Execution, Strategy

Main = Callable[[], Coroutine[Any, Any, Any]]


@dataclass
class LoopRun:
    """What one run on the controlled loop did, and the exception it ended with (or None)."""

    execution: Execution
    error: BaseException | None = None


def run_once(
    main: Main,
    strategy: Strategy,
    *,
    horizon: float = HORIZON,
    settle_timeout: float = SETTLE_TIMEOUT,
) -> LoopRun:
    """One run of ``main()`` on a fresh controlled loop; the exception is caught and kept."""
    loop = ControlledLoop(strategy, horizon=horizon, settle_timeout=settle_timeout)
    error: BaseException | None = None
    runner = asyncio.Runner(loop_factory=lambda: loop)
    try:
        runner.run(main())
    except Exception as exc:  # the run's own failure: kept, not raised
        error = exc
    finally:
        try:
            runner.close()
        except Exception as exc:  # cleanup of a failed run can fail too: the first one counts
            error = error or exc
    return LoopRun(loop.execution, error)
