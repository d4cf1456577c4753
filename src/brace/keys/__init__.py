"""Virtual API keys and budgets (``docs/keys.md``).

- :mod:`~brace.keys._model`: a key's record, budgets, periods, the admin API's input;
- :mod:`~brace.keys._store`: keys, teams and settled spend in SQLite or PostgreSQL
  (the tables of :mod:`brace.store.keys`, as :class:`VirtualKey` and :class:`Budget`);
- :mod:`~brace.keys._ring`: the keys in memory, kept in step across gateways;
- :mod:`~brace.keys._ledger`: holds and spend (in-process + database, or Redis);
- :mod:`~brace.keys._service`: :class:`Keys`, the whole of it for one gateway.
"""

from ._ledger import BudgetAlert, Hold, Ledger, LocalLedger, RedisLedger, Scope
from ._model import (
    KEY_PREFIX,
    Budget,
    BudgetSpec,
    KeyCreate,
    KeyUpdate,
    TeamUpdate,
    VirtualKey,
    hash_key,
    period_id,
    period_reset,
)
from ._ring import MASTER, KeyRing
from ._service import Keys
from ._store import KeyStore, open_key_store

__all__ = [
    "KEY_PREFIX",
    "MASTER",
    "Budget",
    "BudgetAlert",
    "BudgetSpec",
    "Hold",
    "KeyCreate",
    "KeyRing",
    "KeyStore",
    "KeyUpdate",
    "Keys",
    "Ledger",
    "LocalLedger",
    "RedisLedger",
    "Scope",
    "TeamUpdate",
    "VirtualKey",
    "hash_key",
    "open_key_store",
    "period_id",
    "period_reset",
]
