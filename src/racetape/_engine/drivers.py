"""The seam through which database drivers join the controlled loop; the engine knows none.

A driver talks to its database from a thread of its own (aiosqlite) or over a socket (asyncpg,
psycopg); neither goes through the default executor, so the loop cannot see on its own when a
request takes effect or when its answer may land. An adapter for the driver (in
``racetape.drivers``) registers here and makes the driver's requests visible to the loop
through the loop's generic means (a served thread's queue, a watched socket).

Contract: :meth:`Driver.install` is idempotent and cheap; it changes nothing unless the driver's
module is already imported, and what it installs acts only while the running loop is a
``ControlledLoop``: code on any other loop runs exactly as without racetape.
"""

from __future__ import annotations

from typing import Protocol


class Driver(Protocol):
    name: str

    def install(self) -> None:
        """Hook into the driver, if it is imported and not hooked yet."""


_DRIVERS: list[Driver] = []


def register(driver: Driver) -> None:
    """Make ``driver`` known to every controlled loop made from now on (once per name)."""
    if all(d.name != driver.name for d in _DRIVERS):
        _DRIVERS.append(driver)


def install_drivers() -> None:
    """Called by a controlled loop when it is made and each time it starts running: a driver
    imported after the loop was made is hooked before the loop runs its code."""
    for driver in _DRIVERS:
        driver.install()
