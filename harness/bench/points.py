""":func:`control_point_cost` measures what a control point costs the reference code when no
controller is installed (the price every production call pays), against an empty function.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from racetape import point, point_blocking


def _empty(name: str, /, **info: object) -> None:
    """What a control point would cost if it were free: a call with the same arguments."""


async def _empty_async(name: str, /, **info: object) -> None:
    """The coroutine twin of :func:`_empty`."""


def _calls(point: Callable[..., None], number: int, task_id: str) -> float:
    """Seconds for ``number`` calls, as the reference code makes them (``append.begin``'s)."""
    began = time.perf_counter()
    for _ in range(number):
        point("append.begin", task_id=task_id, kind="progress", acquires=task_id)
    return time.perf_counter() - began


async def _awaits(
    point: Callable[..., Coroutine[Any, Any, None]], number: int, task_id: str
) -> float:
    """Seconds for ``number`` awaits of ``point``, as the reference code awaits a point."""
    began = time.perf_counter()
    for _ in range(number):
        await point("append.begin", task_id=task_id, kind="progress", acquires=task_id)
    return time.perf_counter() - began


def control_point_cost(number: int = 100_000, repeat: int = 7) -> dict[str, Any]:
    """Nanoseconds per control point with no controller installed, best of ``repeat``.

    :func:`racetape.point` is awaited in a coroutine on a running loop, as the reference code
    does; :func:`racetape.point_blocking` is called (the document keeps its keys,
    ``checkpoint_*``). Each has an empty baseline with the same signature and arguments, so
    ``*_over_empty_ns`` is what the point itself costs.
    """
    task_id = uuid.uuid4().hex

    # Each timing alternates with its baseline's, so a slow spell of the machine falls on both.
    async def awaited() -> tuple[float, float]:
        point_s, empty_s = [], []
        for _ in range(repeat):
            point_s.append(await _awaits(point, number, task_id))
            empty_s.append(await _awaits(_empty_async, number, task_id))
        return min(point_s), min(empty_s)

    checkpoint_s, empty_coroutine_s = asyncio.run(awaited())
    blocking, empty = [], []
    for _ in range(repeat):
        blocking.append(_calls(point_blocking, number, task_id))
        empty.append(_calls(_empty, number, task_id))
    blocking_s, empty_s = min(blocking), min(empty)

    def ns(seconds: float) -> float:
        return round(seconds / number * 1e9, 1)

    return {
        "checkpoint_ns": ns(checkpoint_s),
        "empty_coroutine_ns": ns(empty_coroutine_s),
        "checkpoint_blocking_ns": ns(blocking_s),
        "empty_function_ns": ns(empty_s),
        "checkpoint_over_empty_ns": ns(checkpoint_s - empty_coroutine_s),
        "checkpoint_blocking_over_empty_ns": ns(blocking_s - empty_s),
        "calls_timed": number,
    }
