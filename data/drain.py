"""Drain the service's SQLite log into the lake: scored transactions and label events.

The service records every transaction it scored (with its score and model version) and every label it
was told (``/feedback``, analysts' verdicts) in ``Settings.feedback_path`` (:mod:`data.feedback`). The
ingest flow lands both into the lake's Delta tables; both merges skip what is already there, so draining
the whole log again is a no-op and nothing is deleted from the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from data.lake import Lake


def service_log_readers() -> tuple[Any, Any] | None:
    """``data.feedback``'s ``(read_scored, read_label_events)``, or None in a version without them."""
    from data import feedback

    read_scored = getattr(feedback, "read_scored", None)
    read_label_events = getattr(feedback, "read_label_events", None)
    if read_scored is None or read_label_events is None:
        return None
    return read_scored, read_label_events


def drain_service_log(lake: Lake, path: Path) -> dict[str, int]:
    """Land the log's scored rows into ``transactions`` and its label events into ``labels``; return counts.

    Scored rows keep their ``score`` and ``model_version`` (a transaction already in the lake keeps its
    row). Keys: ``scored_read, scored_landed, labels_read, labels_landed, label_duplicates,
    contradictions, unknown_transactions``; empty when the log does not exist or cannot be read here.
    """
    readers = service_log_readers()
    if readers is None or not Path(path).exists():
        return {}
    read_scored, read_label_events = readers
    scored: pl.DataFrame = read_scored(Path(path))
    events: pl.DataFrame = read_label_events(Path(path))
    landing = lake.land(scored.drop("is_fraud", strict=False))
    labels = lake.land_labels(events)
    return {
        "scored_read": scored.height,
        "scored_landed": landing.landed,
        "labels_read": events.height,
        "labels_landed": labels.landed,
        "label_duplicates": labels.duplicates,
        "contradictions": labels.contradictions,
        "unknown_transactions": labels.unknown_transactions,
    }
