"""Online stores behind one interface (:class:`~features.stores.base.FeatureStore`) and the factory that opens one.

- ``memory``: :class:`~features.stores.memory.MemoryFeatureStore`, in process (one worker; the fastest).
- ``sqlite``: :class:`~features.stores.sqlite.SQLiteFeatureStore`, a WAL file shared by the worker
  processes of one machine, which each mirror it in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import polars as pl

from features.definitions import FeatureSpec
from features.stores.base import FeatureStore

StoreKind = Literal["memory", "sqlite"]


def open_store(
    kind: StoreKind,
    spec: FeatureSpec,
    snapshot: pl.DataFrame,
    path: Path | None = None,
    carry_from: Sequence[Path] = (),
) -> FeatureStore:
    """A store of ``kind`` holding ``snapshot`` (loaded once per content into a shared store).

    ``path`` is the SQLite file (required for ``sqlite``); several workers may open the same one.
    ``carry_from`` are other model versions' state files: what they hold after the snapshot's newest
    event (transactions scored by the service since the lake's newest one) is copied in, so a model
    switch or a rollback loses none of it. The memory store starts from the snapshot alone.
    """
    if kind == "memory":
        from features.stores.memory import MemoryFeatureStore

        memory = MemoryFeatureStore(spec)
        memory.load_snapshot(snapshot)
        return memory
    if kind != "sqlite":
        raise ValueError(f"online store must be 'sqlite' or 'memory', not {kind!r}")
    if path is None:
        raise ValueError("the sqlite online store needs a path")
    from features.stores.sqlite import SQLiteFeatureStore

    shared = SQLiteFeatureStore(path, spec)
    shared.load_snapshot(snapshot)
    if carry_from:
        newest = snapshot["t_us"].max() if snapshot.height else None
        shared.carry_over(carry_from, -(2**62) if newest is None else int(newest))  # type: ignore[arg-type]
    return shared
