"""Store adapters by name: the one place in the harness that knows SQLite and Postgres exist."""

from harness.adapters.database import (
    ADAPTERS,
    ASK_AGAIN_EVERY,
    CLEANUP_TIMEOUT,
    CONNECTION_LOST,
    DEFAULT_PG_DSN,
    PG_SESSION,
    PROBE_TIMEOUT,
    RECONNECT_WITHIN,
    STORE_FAULTS,
    Database,
    ServerRestarted,
    connection_lost,
    drop_schemas,
    pg_dsn_from_env,
    resolve_pg_dsn,
    schema_prefix,
)

__all__ = [
    "ADAPTERS",
    "ASK_AGAIN_EVERY",
    "CLEANUP_TIMEOUT",
    "CONNECTION_LOST",
    "DEFAULT_PG_DSN",
    "PG_SESSION",
    "PROBE_TIMEOUT",
    "RECONNECT_WITHIN",
    "STORE_FAULTS",
    "Database",
    "ServerRestarted",
    "connection_lost",
    "drop_schemas",
    "pg_dsn_from_env",
    "resolve_pg_dsn",
    "schema_prefix",
]
