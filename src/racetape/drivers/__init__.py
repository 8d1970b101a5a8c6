"""Adapters that put database drivers' requests under the controlled loop's decisions.

Each adapter registers itself with the engine's seam (``racetape._engine.drivers``) when this
package is imported (``import racetape`` does it); an adapter installs its hooks only once its
driver is imported, and they act only on a ``ControlledLoop``.
"""

from racetape._engine.drivers import register
from racetape.drivers.asyncpg import AsyncpgDriver
from racetape.drivers.psycopg import PsycopgDriver

register(AsyncpgDriver())
register(PsycopgDriver())
