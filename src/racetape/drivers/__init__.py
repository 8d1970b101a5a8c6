"""Adapters that put database drivers' requests under the controlled loop's decisions.

Each adapter registers itself with the engine's seam (``racetape._engine.drivers``) when this
package is imported (``import racetape`` does it); an adapter installs its hooks only once its
driver is imported, and they act only on a ``ControlledLoop``.

- ``aiosqlite``: each request on a connection's thread is a decision (a served thread).
- ``sqlite``: ``sqlite3`` connections are tracked, so that a body waiting in SQLite's busy
  handler on another actor's transaction is seen as blocked, not as slow.
"""

from racetape._engine.drivers import register
from racetape.drivers import aiosqlite, sqlite
from racetape.drivers.asyncpg import AsyncpgDriver
from racetape.drivers.psycopg import PsycopgDriver

register(sqlite.DRIVER)
register(aiosqlite.DRIVER)
register(AsyncpgDriver())
register(PsycopgDriver())
