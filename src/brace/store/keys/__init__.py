"""Keys, team budgets and settled spend in the database (SQLite or PostgreSQL).

Tables ``api_keys``, ``teams``, ``key_changes``, ``instances`` (migration
``0003_keys``) and ``spend`` (``0004_spend``): one schema for both engines, applied
by whichever store opens the database first.  Every change to a key or a team bumps
the single row of ``key_changes`` in the same transaction, so gateways sharing the
database notice a change with one cheap read.  Nothing here runs per request:
authentication reads the in-memory :class:`~brace.keys.KeyRing`, and spend reaches
the database in batches.

This module deals in plain values: a key is a row (a dict of :data:`KEY_COLUMNS`,
with ``models`` a list or ``None``, ``budgets`` a list of dicts and ``metadata`` a
dict; their JSON text is this module's business); :mod:`brace.keys` converts rows
to its :class:`~brace.keys.VirtualKey` and :class:`~brace.keys.Budget`.
"""

from __future__ import annotations

from ...errors import ConfigError
from ._tables import KEY_COLUMNS, KeyRow, KeyTables, SQLiteKeyTables

__all__ = ["KEY_COLUMNS", "KeyRow", "KeyTables", "open_key_tables"]


def open_key_tables(database: str) -> KeyTables:
    """The tables in ``database``: a PostgreSQL URL, else a SQLite path."""
    if database.startswith(("postgres://", "postgresql://")):
        try:  # asyncpg is imported only for PostgreSQL
            from ._postgres import PostgresKeyTables
        except ImportError:  # pragma: no cover - asyncpg is installed in development
            raise ConfigError(
                "keys.database is a PostgreSQL URL but asyncpg is not installed: "
                "pip install 'brace[postgres]'"
            ) from None
        return PostgresKeyTables(database)
    return SQLiteKeyTables(database)
