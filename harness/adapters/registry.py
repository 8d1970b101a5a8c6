"""The adapters by name, in the order ``--adapter``'s choices and ``racetape list`` give them."""

from __future__ import annotations

from collections.abc import Iterable

from harness.adapters.base import Adapter
from harness.adapters.postgres import POSTGRES
from harness.adapters.sqlite import SQLITE

REGISTRY: dict[str, Adapter] = {adapter.name: adapter for adapter in (SQLITE, POSTGRES)}
ADAPTERS = tuple(REGISTRY)
"""The adapters' names, the default first."""
DEFAULT_ADAPTER = ADAPTERS[0]
"""The adapter of a command given no ``--adapter``."""


def adapter_named(name: str) -> Adapter:
    """The adapter called ``name``; ValueError naming the adapters there are if none is."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; adapters: {', '.join(ADAPTERS)}") from None


def needs_dsn(names: Iterable[str]) -> bool:
    """Whether any of the adapters called ``names`` is on a server a DSN names (so a command
    resolves, and checks, ``--pg-dsn``)."""
    return any(adapter_named(name).needs_dsn for name in names)
