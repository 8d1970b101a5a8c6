"""Store adapters: SQLite through aiosqlite, Postgres through asyncpg."""

from reftask.stores.base import StoreUnavailableError

__all__ = ["StoreUnavailableError"]
