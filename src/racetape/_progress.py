"""Progress of a command's runs: a bar with runs/s and the time left on a terminal, a plain
line every few seconds elsewhere (CI logs), nothing when quiet.

:func:`progress_bar` picks one. Each takes :meth:`start` (the runs there will be at most, and
what they are), :meth:`advance` after each run (with a short note: the best schedule so far, the
failures) and :meth:`finish`; a bar whose total was a cap (a shrink stops when nothing smaller
fails) ends full. Written to stderr, so a command's stdout stays its result.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class RunsProgress(Protocol):
    def start(self, total: int | None, what: str, *, cap: bool = False) -> None:
        """``total`` runs to come (``cap``: at most; the command may stop sooner; None: not
        known, as in a Hypothesis search, so no time left is shown)."""

    def advance(self, done: int, note: str = "") -> None:
        """``done`` runs so far (not an increment: a child process reports its own count)."""

    def finish(self) -> None: ...


class NoProgress:
    """Quiet: the verdict only."""

    def start(self, total: int | None, what: str, *, cap: bool = False) -> None:
        pass

    def advance(self, done: int, note: str = "") -> None:
        pass

    def finish(self) -> None:
        pass


def _rate_and_left(done: int, total: int, started: float) -> tuple[float, float]:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = done / elapsed
    return rate, ((total - done) / rate if rate else 0.0)


class PlainProgress:
    """A line at most every ``every`` seconds, and one at the end: runs, runs/s, time left."""

    def __init__(self, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self.total: int | None = None
        self.done = 0
        self.what = ""
        self.note = ""
        self.started = self.last = time.monotonic()

    def start(self, total: int | None, what: str, *, cap: bool = False) -> None:
        self.total, self.what = total, what
        self.started = self.last = time.monotonic()
        if total is None:
            runs = "runs until it is done"
        else:
            runs = ("at most " if cap else "") + f"{total} run" + ("" if total == 1 else "s")
        print(f"racetape: {what}: {runs}", file=self.stream, flush=True)

    def advance(self, done: int, note: str = "") -> None:
        self.done, self.note = done, note
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(f"racetape: {self.what}: {self.line()}", file=self.stream, flush=True)

    def line(self) -> str:
        if self.total is None:
            rate, _ = _rate_and_left(self.done, self.done, self.started)
            text = f"{self.done} runs, {rate:.1f} runs/s"
        else:
            rate, left = _rate_and_left(self.done, self.total, self.started)
            text = f"{self.done}/{self.total} runs, {rate:.1f} runs/s, about {left:.0f} s left"
        return f"{text}; {self.note}" if self.note else text

    def finish(self) -> None:
        rate, _ = _rate_and_left(self.done, self.done, self.started)
        note = f"; {self.note}" if self.note else ""
        runs = f"{self.done} run" + ("" if self.done == 1 else "s")
        print(
            f"racetape: {self.what}: {runs}, {rate:.1f} runs/s{note}",
            file=self.stream,
            flush=True,
        )


class RichProgress:
    """rich's bar: what, the bar, runs done of the cap, the note, runs/s, elapsed, time left."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[runs]}"),
            TextColumn("{task.fields[rate]} runs/s"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._task: Any = None
        self._total: int | None = None
        self._started = time.monotonic()

    def start(self, total: int | None, what: str, *, cap: bool = False) -> None:
        self._started = time.monotonic()
        self._total = total
        self._progress.start()
        self._task = self._progress.add_task(
            what, total=total, rate="-", note="", runs=self._runs(0)
        )

    def _runs(self, done: int) -> str:
        return f"{done} runs" if self._total is None else f"{done}/{self._total} runs"

    def advance(self, done: int, note: str = "") -> None:
        rate, _ = _rate_and_left(done, done, self._started)
        self._progress.update(
            self._task, completed=done, rate=f"{rate:.1f}", note=note, runs=self._runs(done)
        )

    def finish(self) -> None:
        task = self._progress.tasks[0] if self._progress.tasks else None
        if task is not None and task.total is not None:
            self._progress.update(self._task, completed=task.total)  # a cap ends full
        self._progress.stop()


def progress_bar(*, quiet: bool = False, stream: TextIO | None = None) -> RunsProgress:
    """The bar for this process's stderr: none when ``quiet``, rich on a terminal, else plain."""
    if quiet:
        return NoProgress()
    stream = stream or sys.stderr
    return RichProgress() if stream.isatty() else PlainProgress(stream)
