"""Prediction logs for ``bentoml.monitor``: BentoML's default layout, written a batch at a time.

BentoML's default monitor formats each row through Python logging's JSON formatter (~25 us a row,
measured in bench/bench_service.py): more than scoring the row. :class:`JsonLinesMonitor` writes the
same records (the logged columns plus ``timestamp``, ``request_id`` and ``trace_id``) to the same
files (``<log_path>/<name>/data/data.<worker>.log``, schema beside it) as one write per
``bentoml.monitor`` block. Selected in the service's ``monitoring`` config by import path.
"""

from __future__ import annotations

import collections
import datetime
import io
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pydantic_core
from bentoml._internal.context import server_context, trace_context
from bentoml._internal.monitoring.base import MON_DATAS_VAR
from bentoml._internal.monitoring.default import DefaultMonitor

#: From this many rows a block is encoded column-wise by Polars (JSON lines with the same keys and values).
COLUMNAR_ROWS = 64


class JsonLinesMonitor(DefaultMonitor):
    """:class:`DefaultMonitor`'s records and files, encoded in one go per block (no log rotation)."""

    def __init__(self, name: str, log_path: str, **options: Any) -> None:
        super().__init__(name, log_path, **options)
        self._file: Any = None
        self._write_lock = threading.Lock()

    def log_batch(self, data_batch: Iterable[Any], name: str, role: str, data_type: str) -> None:
        """Log a column in one go (BentoML's ``log_batch`` calls ``log`` once per value)."""
        values = list(data_batch)
        if not values:
            return
        self.log(values[0], name, role, data_type)  # registers the column (and its warnings) once
        datas = MON_DATAS_VAR.get()
        assert datas is not None
        datas[name if name not in self.PRESERVED_COLUMNS else name + "_"].extend(values[1:])

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        """Append one JSON line per logged row (the same records as one ``to_json`` per row; many rows column-wise)."""
        columns = list(datas)
        extra = {
            self.COLUMN_TIME: datetime.datetime.now().isoformat(),
            self.COLUMN_RID: str(trace_context.request_id),
            self.COLUMN_TID: str(trace_context.trace_id),
        }
        rows = len(next(iter(datas.values()), ()))
        if rows >= COLUMNAR_ROWS:
            frame = pl.DataFrame({name: list(values) for name, values in datas.items()}, strict=False)
            body = io.BytesIO()
            frame.with_columns(pl.lit(value, dtype=pl.String).alias(key) for key, value in extra.items()).write_ndjson(
                body
            )
            lines = body.getvalue()
        else:
            lines = b"".join(
                pydantic_core.to_json({**dict(zip(columns, values, strict=True)), **extra}) + b"\n"
                for values in zip(*datas.values(), strict=True)
            )
        with self._write_lock:
            if self._file is None:
                path = Path(self.log_path) / self.name / "data" / f"data.{server_context.worker_index or 0}.log"
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("ab", buffering=0)  # unbuffered: each block is one write
            self._file.write(lines)
