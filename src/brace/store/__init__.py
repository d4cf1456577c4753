"""Durable state: one schema, ordered migrations, the SQLite and PostgreSQL engines,
and one module per table family.

``brace.store`` sits below telemetry, keys, cache and the gateway: it imports only
ground-floor modules (``errors``, ``config``, ``state``, ``_tasks``) and deals in
rows, plain values or small protocols, never in those packages' types.

- :mod:`._migrations`: :data:`MIGRATIONS` (every table's, one ordered list) and how
  they are applied on each engine; :class:`SchemaTooNew`;
- :mod:`._sqlite`, :mod:`._postgres`: the connection policies (WAL, timeouts and
  threads; asyncpg pools, schemas, URL redaction, ``?`` placeholders);
- :mod:`.requests`: the request log (``requests``, ``attempts``);
- :mod:`.keys`: virtual keys, teams, their change version, gateway instances and
  settled spend;
- :mod:`.cache`: the response cache's SQLite file (its own, rebuilt on a new version).

A new table family (agent runs, journals, eval runs...) is one more module here and
migrations appended to :data:`MIGRATIONS`.  See ``docs/store.md``.
"""

from __future__ import annotations

from ._migrations import MIGRATIONS, Migration, SchemaTooNew

__all__ = ["MIGRATIONS", "Migration", "SchemaTooNew"]
