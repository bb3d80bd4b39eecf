"""Online stores behind one interface (:class:`~features.stores.base.FeatureStore`) and the factory that opens one.

- ``memory``: :class:`~features.stores.memory.MemoryFeatureStore`, in process (one worker; the fastest).
- ``sqlite``: :class:`~features.stores.sqlite.SQLiteFeatureStore`, a WAL file shared by the worker
  processes of one machine, which each mirror it in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from features.definitions import FeatureSpec
from features.stores.base import FeatureStore

StoreKind = Literal["memory", "sqlite"]


def open_store(kind: StoreKind, spec: FeatureSpec, snapshot: pl.DataFrame, path: Path | None = None) -> FeatureStore:
    """A store of ``kind`` holding ``snapshot`` (loaded once per content into a shared store).

    ``path`` is the SQLite file (required for ``sqlite``); several workers may open the same one.
    """
    if kind == "memory":
        from features.stores.memory import MemoryFeatureStore

        store: FeatureStore = MemoryFeatureStore(spec)
    elif kind == "sqlite":
        if path is None:
            raise ValueError("the sqlite online store needs a path")
        from features.stores.sqlite import SQLiteFeatureStore

        store = SQLiteFeatureStore(path, spec)
    else:
        raise ValueError(f"online store must be 'sqlite' or 'memory', not {kind!r}")
    store.load_snapshot(snapshot)
    return store
