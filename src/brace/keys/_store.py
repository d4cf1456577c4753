"""Keys, team budgets and settled spend, durably: :class:`KeyStore`.

The tables, their SQL and both engines are :mod:`brace.store.keys`, which deals in
plain rows; this adapter turns them into :class:`VirtualKey` and :class:`Budget`
and back.  Nothing here runs per request: authentication reads the in-memory
:class:`~brace.keys.KeyRing`, and spend reaches the database in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..store.keys import KeyRow, KeyTables, open_key_tables
from ._model import Budget, VirtualKey

__all__ = ["KeyStore", "open_key_store"]


def _key_row(k: VirtualKey) -> KeyRow:
    return {
        "id": k.id,
        "key_hash": k.key_hash,
        "prefix": k.prefix,
        "name": k.name,
        "team": k.team,
        "models": sorted(k.models) if k.models is not None else None,
        "rpm": k.rpm,
        "tpm": k.tpm,
        "priority": k.priority,
        "budgets": [b.to_dict() for b in k.budgets],
        "metadata": k.metadata,
        "created_at": k.created_at,
        "updated_at": k.updated_at,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
    }


def _row_key(d: KeyRow) -> VirtualKey:
    models = d["models"]
    return VirtualKey(
        id=d["id"],
        key_hash=d["key_hash"],
        prefix=d["prefix"],
        name=d["name"],
        team=d["team"],
        models=frozenset(models) if models is not None else None,
        rpm=d["rpm"],
        tpm=d["tpm"],
        priority=d["priority"],
        budgets=_budgets(d["budgets"]),
        metadata=d["metadata"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        expires_at=d["expires_at"],
        revoked_at=d["revoked_at"],
    )


def _budgets(dicts: Sequence[dict[str, Any]]) -> tuple[Budget, ...]:
    return tuple(Budget.from_dict(b) for b in dicts)


class KeyStore:
    """Keys and team budgets as :class:`VirtualKey` and :class:`Budget`; versions,
    instances and spend as the tables give them."""

    def __init__(self, tables: KeyTables) -> None:
        self.tables = tables
        self.where = tables.where

    async def start(self) -> None:
        await self.tables.start()

    async def aclose(self) -> None:
        await self.tables.aclose()

    # ------------------------------------------------------------------ keys and teams

    async def version(self) -> int:
        return await self.tables.version()

    async def load(self) -> tuple[int, list[VirtualKey], dict[str, tuple[Budget, ...]]]:
        """Every key (revoked ones too) and team budget, with the version they are at."""
        version, rows, teams = await self.tables.load()
        return version, [_row_key(r) for r in rows], {t: _budgets(b) for t, b in teams.items()}

    async def insert_key(self, key: VirtualKey) -> None:
        await self.tables.insert_key(_key_row(key))

    async def update_key(self, key: VirtualKey) -> None:
        await self.tables.update_key(_key_row(key))

    async def set_team(self, team: str, budgets: Sequence[Budget], now: float) -> None:
        await self.tables.set_team(team, [b.to_dict() for b in budgets], now)

    # ------------------------------------------------------------------ instances and spend

    async def heartbeat(self, instance: str, seen_version: int, now: float) -> None:
        await self.tables.heartbeat(instance, seen_version, now)

    async def instances(self, alive_since: float) -> dict[str, int]:
        """Live instances (heartbeat since ``alive_since``) and the version each loaded."""
        return await self.tables.instances(alive_since)

    async def forget_instance(self, instance: str) -> None:
        await self.tables.forget_instance(instance)

    async def add_spend(self, rows: Sequence[tuple[str, str, float, int]], now: float) -> None:
        """Add settled spend: ``(scope, period, usd, requests)`` rows, summed in place."""
        await self.tables.add_spend(rows, now)

    async def spend(self, periods: Sequence[str]) -> dict[tuple[str, str], tuple[float, int]]:
        """Settled spend of every scope in ``periods``: ``{(scope, period): (usd, requests)}``."""
        return await self.tables.spend(periods)


def open_key_store(database: str) -> KeyStore:
    """The store for ``database``: a PostgreSQL URL, else a SQLite path."""
    return KeyStore(open_key_tables(database))
