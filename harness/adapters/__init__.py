"""Store adapters by name: the one place in the harness that knows SQLite and Postgres exist.

:class:`~harness.adapters.base.Adapter` is what each answers; :mod:`harness.adapters.sqlite`
and :mod:`harness.adapters.postgres` are the two there are; :data:`REGISTRY` has them by name
(:data:`ADAPTERS`, the default first); :class:`Database` is one worker's database on any.
"""

from harness.adapters.base import (
    ASK_AGAIN_EVERY,
    CLEANUP_TIMEOUT,
    CONNECTION_LOST,
    PROBE_TIMEOUT,
    RECONNECT_WITHIN,
    STORE_FAULTS,
    Adapter,
    Location,
    ServerRestarted,
    connection_lost,
)
from harness.adapters.database import Database
from harness.adapters.postgres import (
    DEFAULT_PG_DSN,
    PG_SESSION,
    drop_schemas,
    pg_dsn_from_env,
    resolve_pg_dsn,
    schema_prefix,
)
from harness.adapters.registry import (
    ADAPTERS,
    DEFAULT_ADAPTER,
    REGISTRY,
    adapter_named,
    needs_dsn,
)

__all__ = [
    "ADAPTERS",
    "ASK_AGAIN_EVERY",
    "CLEANUP_TIMEOUT",
    "CONNECTION_LOST",
    "DEFAULT_ADAPTER",
    "DEFAULT_PG_DSN",
    "PG_SESSION",
    "PROBE_TIMEOUT",
    "RECONNECT_WITHIN",
    "REGISTRY",
    "STORE_FAULTS",
    "Adapter",
    "Database",
    "Location",
    "ServerRestarted",
    "adapter_named",
    "connection_lost",
    "drop_schemas",
    "needs_dsn",
    "pg_dsn_from_env",
    "resolve_pg_dsn",
    "schema_prefix",
]
