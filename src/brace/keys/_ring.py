"""The keys every gateway holds in memory, kept in step with the database.

Authentication is a dictionary lookup of the presented key's SHA-256: nothing per
request touches the database.  Each gateway reads the one-row ``key_changes``
version every ``keys.refresh_seconds`` and reloads when it moved; it records the
version it has loaded in ``instances`` (its heartbeat).  A change made through the
admin API bumps the version, is applied at once on the gateway that made it, and
the call answers once every live gateway has loaded it (or after
``keys.propagation_timeout``, saying how many had): a revoked key is refused
everywhere by the time ``brace keys revoke`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .._tasks import stop_task
from ..errors import AuthenticationFailed
from ._ledger import Scope
from ._model import KEY_PREFIX, Budget, KeyCreate, KeyUpdate, VirtualKey, new_key
from ._store import KeyStore

__all__ = ["MASTER", "KeyRing"]

log = logging.getLogger("brace.keys")


class _Master:
    """The caller presented the master key: every model, no budget."""

    def __repr__(self) -> str:
        return "MASTER"


MASTER = _Master()


class KeyRing:
    def __init__(
        self,
        store: KeyStore,
        *,
        master_key: str | None,
        refresh_seconds: float = 0.25,
        propagation_timeout: float = 2.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._master = master_key.encode() if master_key else None
        self._refresh = refresh_seconds
        self._propagation_timeout = propagation_timeout
        self._wall = wall
        self.instance = os.urandom(8).hex()
        self.version = -1
        self._by_hash: dict[str, VirtualKey] = {}
        self._by_id: dict[str, VirtualKey] = {}
        self._teams: dict[str, tuple[Budget, ...]] = {}
        self._scopes: dict[str, tuple[Scope, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self._beat_every = max(1.0, refresh_seconds)
        self._last_beat = 0.0
        self.poll_errors = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._reload()
        await self._beat()
        self._task = asyncio.create_task(self._run(), name="brace-keys-refresh")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        with contextlib.suppress(Exception):
            await self._store.forget_instance(self.instance)

    async def _reload(self) -> None:
        version, keys, teams = await self._store.load()
        self._by_id = {k.id: k for k in keys}
        self._by_hash = {k.key_hash: k for k in keys}
        self._teams = teams
        self._scopes = {}
        self.version = version

    async def _beat(self) -> None:
        self._last_beat = self._wall()
        await self._store.heartbeat(self.instance, self.version, self._last_beat)

    async def refresh(self) -> None:
        """One poll: reload if the database moved, heartbeat when due."""
        version = await self._store.version()
        changed = version != self.version
        if changed:
            await self._reload()
        if changed or self._wall() - self._last_beat >= self._beat_every:
            await self._beat()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.refresh()
            except Exception as exc:
                self.poll_errors += 1
                if self.poll_errors in (1, 10) or self.poll_errors % 1000 == 0:
                    log.warning(
                        "keys: cannot read the key store (%s); serving the keys loaded last",
                        type(exc).__name__,
                    )

    # ------------------------------------------------------------------ the hot path

    @property
    def auth_required(self) -> bool:
        """Keys are checked once a master key is set or any key was ever created."""
        return self._master is not None or bool(self._by_id)

    def authenticate(self, authorization: str | None) -> VirtualKey | _Master | None:
        """The caller's key; :data:`MASTER`; ``None`` in local mode (no keys at all)."""
        if not self.auth_required:
            return None
        if not authorization:
            raise AuthenticationFailed(
                "no API key: send Authorization: Bearer <key> (create keys with `brace keys "
                "create` or POST /admin/keys)",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "the Authorization header must be 'Bearer <key>'", code="invalid_api_key"
            )
        if self._master is not None and hmac.compare_digest(token.encode(), self._master):
            return MASTER
        from ._model import hash_key

        key = self._by_hash.get(hash_key(token))
        if key is None:
            shown = token[: len(KEY_PREFIX) + 4] + "…" if len(token) > 16 else "***"
            raise AuthenticationFailed(
                f"invalid API key {shown}: it is not a key of this gateway", code="invalid_api_key"
            )
        state = key.state(self._wall())
        if state == "revoked":
            raise AuthenticationFailed(
                f"API key {key.prefix}… ({key.id}) was revoked", code="key_revoked"
            )
        if state == "expired":
            raise AuthenticationFailed(
                f"API key {key.prefix}… ({key.id}) expired", code="key_expired"
            )
        return key

    def scopes(self, key: VirtualKey) -> tuple[Scope, ...]:
        """Where a request with ``key`` spends: the key, and its team when it has one."""
        scopes = self._scopes.get(key.id)
        if scopes is None:
            out = [Scope(key.scope, f"key {key.name!r} ({key.id})", key.budgets)]
            if key.team:
                out.append(
                    Scope(f"team:{key.team}", f"team {key.team!r}", self._teams.get(key.team, ()))
                )
            scopes = self._scopes[key.id] = tuple(out)
        return scopes

    # ------------------------------------------------------------------ admin

    def get(self, key_id: str) -> VirtualKey | None:
        return self._by_id.get(key_id)

    def all(self) -> list[VirtualKey]:
        return sorted(self._by_id.values(), key=lambda k: k.created_at)

    def teams(self) -> dict[str, tuple[Budget, ...]]:
        names = {k.team for k in self._by_id.values() if k.team} | set(self._teams)
        return {t: self._teams.get(t, ()) for t in sorted(names)}

    async def create(self, spec: KeyCreate) -> tuple[VirtualKey, str]:
        now = self._wall()
        key_id, plaintext, digest = new_key()
        key = VirtualKey(
            id=key_id,
            key_hash=digest,
            prefix=plaintext[: len(KEY_PREFIX) + 4],
            name=spec.name,
            team=spec.team,
            models=frozenset(spec.models) if spec.models is not None else None,
            rpm=spec.rpm,
            tpm=spec.tpm,
            priority=spec.priority,
            budgets=tuple(b.build() for b in spec.budgets or ()),
            metadata=dict(spec.metadata or {}),
            created_at=now,
            updated_at=now,
            expires_at=spec.expiry(now),
        )
        await self._store.insert_key(key)
        await self._applied()
        return key, plaintext

    async def update(self, key: VirtualKey, spec: KeyUpdate) -> VirtualKey:
        now = self._wall()
        given = spec.model_fields_set
        changes: dict[str, Any] = {"updated_at": now}
        for name in ("name", "team", "rpm", "tpm", "priority"):
            if name in given:
                changes[name] = getattr(spec, name)
        if "name" in given and spec.name is None:
            raise ValueError("name cannot be null")
        if "models" in given:
            changes["models"] = frozenset(spec.models) if spec.models is not None else None
        if "budgets" in given:
            changes["budgets"] = tuple(b.build() for b in spec.budgets or ())
        if "metadata" in given:
            changes["metadata"] = dict(spec.metadata or {})
        if "expires_at" in given or "expires_in" in given:
            changes["expires_at"] = spec.expiry(now)
        updated = replace(key, **changes)
        await self._store.update_key(updated)
        await self._applied()
        return updated

    async def revoke(self, key: VirtualKey) -> VirtualKey:
        if key.revoked_at is not None:
            return key
        now = self._wall()
        revoked = replace(key, revoked_at=now, updated_at=now)
        await self._store.update_key(revoked)
        await self._applied()
        return revoked

    async def set_team(self, team: str, budgets: Sequence[Budget]) -> None:
        await self._store.set_team(team, budgets, self._wall())
        await self._applied()

    async def _applied(self) -> None:
        await self._reload()
        await self._beat()

    async def propagate(self) -> dict[str, Any]:
        """Wait until every live gateway has loaded this one's version (bounded)."""
        target = self.version
        deadline = time.monotonic() + self._propagation_timeout
        while True:
            alive_since = self._wall() - 5 * self._beat_every
            seen = await self._store.instances(alive_since)
            behind = [i for i, v in seen.items() if v < target]
            if not behind or time.monotonic() >= deadline:
                return {
                    "version": target,
                    "instances": len(seen),
                    "confirmed": len(seen) - len(behind),
                }
            await asyncio.sleep(min(0.05, self._refresh / 2))

    def stats(self) -> dict[str, Any]:
        now = self._wall()
        states = [k.state(now) for k in self._by_id.values()]
        return {
            "mode": "keys" if self.auth_required else "local",
            "keys": len(states),
            "active": states.count("active"),
            "version": self.version,
            "poll_errors": self.poll_errors,
        }
