"""Real-time scoring: online features from the shared state, native booster, readable reasons."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pydantic_core
import xgboost as xgb
from pydantic import TypeAdapter, ValidationError

from data.contract import MAX_CLOCK_SKEW, MAX_PLAUSIBLE_AMOUNT, TransactionIn
from data.profiles import profile_from_dict
from features.definitions import to_epoch_us
from features.stores import open_store
from features.stores.base import FeatureStore
from model.attributions import PathAttributions
from model.bundle import Bundle
from model.card import ModelCard
from service.profiled import ProfiledRequests, uses_own_request
from service.schemas import BatchResponse, FeedbackItem, ScoreResponse, describe_validation_error, row_error
from service.uploads import REQUIRED

#: Rows a batch scores one at a time (or labels /feedback applies) per hold of the state lock and per write to
#: a shared store: ~15 ms, the longest a single /score (on the event loop) waits for a running batch.
STATE_CHUNK_ROWS = 500
#: Rows a batch's one-pass features (``FeatureStore.chunk_features``) take per hold of the state lock: ~15 ms
#: (bench/bench_batch.py), as :data:`STATE_CHUNK_ROWS` row by row.
BATCH_CHUNK_ROWS = 4096
#: Fewer rows than this (a single /score) go row by row: the one-pass path's fixed cost is higher.
ONE_PASS_MIN_ROWS = 16
#: Booster threads for a batch's single prediction call (measured in bench/bench_batch.py).
BATCH_THREADS = 2
#: Batches up to this many rows take their attributions from :class:`PathAttributions` row by row (~25 µs a
#: row on the bench model) instead of XGBoost (a DMatrix and a call: ~190 µs, whatever the row count).
PATH_ATTRIBUTION_ROWS = 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transactions:
    """Valid transactions as columns, in arrival order (what the batch path scores and logs)."""

    transaction_id: list[str]
    customer_id: list[str]
    terminal_id: list[str]
    t_us: np.ndarray  # int64 UTC epoch microseconds
    amount: np.ndarray  # float64
    #: Row features (``spec.row_names`` columns) of a dataset profile's extra columns; None without any.
    row_features: np.ndarray | None = None
    #: Per row, the request's other columns as the lake keeps them (a JSON object of ``attr_*`` text).
    attributes: list[str] | None = None

    @classmethod
    def of(cls, txs: list[TransactionIn]) -> Transactions:
        """Columns of validated transactions."""
        return cls(
            [tx.transaction_id for tx in txs],
            [tx.customer_id for tx in txs],
            [tx.terminal_id for tx in txs],
            np.fromiter((to_epoch_us(tx.tx_datetime) for tx in txs), dtype=np.int64, count=len(txs)),
            np.fromiter((tx.amount for tx in txs), dtype=np.float64, count=len(txs)),
        )

    def __len__(self) -> int:
        return len(self.transaction_id)

    def take(self, keep: np.ndarray) -> Transactions:
        """The rows at positions ``keep`` (increasing)."""
        picks = keep.tolist()
        return Transactions(
            [self.transaction_id[i] for i in picks],
            [self.customer_id[i] for i in picks],
            [self.terminal_id[i] for i in picks],
            self.t_us[keep],
            self.amount[keep],
            None if self.row_features is None else self.row_features[keep],
            None if self.attributes is None else [self.attributes[i] for i in picks],
        )

    def when(self, i: int) -> datetime:
        """Row ``i``'s event time as an aware UTC datetime."""
        return _EPOCH + timedelta(microseconds=int(self.t_us[i]))

    def iso_times(self) -> pl.Series:
        """Event times as ``datetime.isoformat()`` writes them (``+00:00``; microseconds only when not zero)."""
        when = pl.Series(self.t_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
        frame = pl.DataFrame({"when": when})
        return frame.select(
            pl.when(pl.col("when").dt.microsecond() == 0)
            .then(pl.col("when").dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
            .otherwise(pl.col("when").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
        ).to_series()

    def to_models(self) -> list[TransactionIn]:
        """As :class:`TransactionIn` objects (for callers that want them; not on the hot path)."""
        return [
            TransactionIn.model_construct(
                transaction_id=tid, tx_datetime=self.when(i), customer_id=c, terminal_id=k, amount=float(a)
            )
            for i, (tid, c, k, a) in enumerate(
                zip(self.transaction_id, self.customer_id, self.terminal_id, self.amount.tolist(), strict=True)
            )
        ]


#: The media type of a Parquet answer (``Accept`` on /score_file and /score_job).
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
#: The Parquet answer's key-value metadata entry that holds the rejected rows (JSON list of RowError).
PARQUET_ERRORS_KEY = "fraudops.errors"

RESULT_SCHEMA = {
    "transaction_id": pl.String(),
    "fraud_probability": pl.Float64(),
    "decision": pl.String(),
    "threshold": pl.Float64(),
    "model_version": pl.String(),
    "reasons": pl.List(pl.Struct({"feature": pl.String(), "value": pl.Float64(), "contribution": pl.Float64()})),
}


@dataclass(frozen=True)
class ScoredBatch:
    """A scored batch in :class:`BatchResponse`'s shape, as columns: cheap to build and to encode.

    ``frame`` holds one row per result (``RESULT_SCHEMA``), ``columns`` the validated inputs aligned with it.
    """

    received: int
    frame: pl.DataFrame
    errors: list[dict[str, Any]]
    columns: Transactions

    @property
    def results(self) -> list[dict[str, Any]]:
        """The results as plain dicts (:class:`ScoreResponse`'s shape)."""
        return self.frame.to_dicts()

    @property
    def transactions(self) -> list[TransactionIn]:
        """The scored transactions as objects, aligned with :attr:`results`."""
        return self.columns.to_models()

    def payload(self) -> dict[str, Any]:
        """The :class:`BatchResponse` fields; ``received == scored + rejected``."""
        return {
            "received": self.received,
            "scored": self.frame.height,
            "rejected": len(self.errors),
            "results": self.results,
            "errors": self.errors,
        }

    def to_json(self) -> bytes:
        """The response body, encoded column-wise (Polars writes the results; floats round-trip exactly)."""
        head = pydantic_core.to_json(
            {"received": self.received, "scored": self.frame.height, "rejected": len(self.errors)}
        )
        body = io.BytesIO()
        self.frame.write_json(body)
        return b"".join(
            (head[:-1], b',"results":', body.getvalue(), b',"errors":', pydantic_core.to_json(self.errors), b"}")
        )

    def to_parquet(self) -> bytes:
        """The results as a Parquet file (``RESULT_SCHEMA``; reasons a list of structs).

        The rejected rows are in the file's key-value metadata :data:`PARQUET_ERRORS_KEY` (JSON, as in
        :class:`BatchResponse`), with ``received``/``scored``/``rejected`` beside them.
        """
        body = io.BytesIO()
        metadata = {
            PARQUET_ERRORS_KEY: pydantic_core.to_json(self.errors).decode(),
            "fraudops.received": str(self.received),
            "fraudops.scored": str(self.frame.height),
            "fraudops.rejected": str(len(self.errors)),
        }
        self.frame.write_parquet(body, metadata=metadata)
        return body.getvalue()

    def to_model(self) -> BatchResponse:
        """A checked :class:`BatchResponse` (for callers inside the process, e.g. the UI)."""
        return BatchResponse.model_validate(self.payload())


class TransactionConflict(ValueError):
    """A transaction id already scored with another customer, terminal, time or amount."""


_TX = TypeAdapter(TransactionIn)
_TXS = TypeAdapter(list[TransactionIn])


ID_COLUMNS = ("transaction_id", "customer_id", "terminal_id")
#: ASCII without spaces or control characters, 1 to 128 of them: ids that ``TransactionIn`` keeps as they are.
_PLAIN_ID = r"^[!-~]{1,128}$"


def _plainly_valid(frame: pl.DataFrame) -> np.ndarray | None:
    """Per row, whether ``TransactionIn`` surely accepts it unchanged (False: ask it); None for text times (CSV).

    Ids of plain ASCII, an event time (datetime; naive is UTC) not in the future, a finite amount in bounds.
    """
    when, amount = frame.schema["tx_datetime"], frame.schema["amount"]
    if not (isinstance(when, pl.Datetime) and when.time_unit in ("us", "ms")):
        return None
    if not (amount.is_float() or amount.is_integer()):
        return None
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    times = pl.col("tx_datetime") if when.time_zone is None else pl.col("tx_datetime").dt.convert_time_zone("UTC")
    times = times.dt.replace_time_zone(None)
    checks = frame.select(
        pl.all_horizontal(
            *(
                pl.col(c).str.contains(_PLAIN_ID).fill_null(False)
                for c in ("transaction_id", "customer_id", "terminal_id")
            ),
            (times <= latest.replace(tzinfo=None)).fill_null(False),
            pl.col("amount").cast(pl.Float64).is_between(0, MAX_PLAUSIBLE_AMOUNT).fill_null(False),
        )
    )
    return checks.to_series().to_numpy().copy()


class Scorer:
    """Holds the booster, threshold and online state of one loaded model bundle."""

    def __init__(self, bundle: Bundle, n_reasons: int = 3, store: FeatureStore | None = None) -> None:
        self.bundle = bundle
        self.booster: xgb.Booster = bundle.booster
        self.booster.set_param({"nthread": 1})
        self.spec = bundle.spec
        self.feature_names = self.spec.feature_names
        self.threshold = bundle.threshold
        self.version = bundle.version
        self.n_reasons = n_reasons
        # In-process state unless the caller passes a shared store (the service opens one from its settings).
        self.state = store if store is not None else open_store("memory", self.spec, bundle.state)
        self._iteration_range = (0, bundle.card.best_iteration + 1)
        # Batches predict with their own copy (a thread count is a booster setting; /score keeps 1).
        self._batch_booster = self.booster.copy()
        self._batch_booster.set_param({"nthread": BATCH_THREADS})
        # /score's attributions without a DMatrix, equal to XGBoost's bit for bit (None: the model keeps XGBoost's).
        self.attributions = _path_attributions(self.booster, self._iteration_range, len(self.feature_names))
        self._names = np.array(self.feature_names, dtype=object)
        self._n_window = len(self.spec.window_names)
        # A model of a dataset profile with its own layout takes requests in that layout (service/profiled.py).
        profile = profile_from_dict(bundle.card.profile, "model card") if bundle.card.profile else None
        self.profile = profile
        self.requests = ProfiledRequests(profile, self.spec) if profile and uses_own_request(profile) else None

    def features(self, tx: TransactionIn, observe: bool = True) -> np.ndarray:
        """Online feature row for ``tx``; the state then records the transaction.

        Raises :class:`TransactionConflict` if the id is known with other values.
        """
        rows, conflicts = self.features_many([tx], observe)
        if conflicts:
            raise TransactionConflict(conflicts[0])
        return rows[0]

    def features_many(self, txs: list[TransactionIn], observe: bool = True) -> tuple[np.ndarray, dict[int, str]]:
        """Feature rows for transactions in arrival order, each seeing the ones before it (see :meth:`features_of`)."""
        return self.features_of(Transactions.of(txs), observe)

    def features_of(self, txs: Transactions, observe: bool = True) -> tuple[np.ndarray, dict[int, str]]:
        """Feature rows for transactions (columns) in arrival order, each seeing the ones before it.

        With ``observe=False`` (the UI's read-only demo mode) nothing is added to the state: each
        transaction is scored against what the state held before the call.

        A transaction id seen before (in the state or earlier in ``txs``) with the same customer,
        terminal, time and amount is scored as of its own arrival (not counted twice); with other
        values it is a conflict: its row is left unset and its index maps to the reason.

        Batches of :data:`ONE_PASS_MIN_ROWS` rows or more go through the store's one-pass path
        (``FeatureStore.chunk_features``) in chunks of :data:`BATCH_CHUNK_ROWS`; what it does not take (retried or
        late rows, amounts out of its exact range) goes row by row in chunks of :data:`STATE_CHUNK_ROWS`. Each chunk
        holds the store's transaction once (its lock, one catch-up with the other workers, one write to a shared
        store), so single requests interleave with a long batch.
        """
        n = len(txs)
        out = np.empty((n, len(self.feature_names)), dtype=np.float64)
        windows = out[:, : self._n_window] if self.spec.row_names else out
        conflicts: dict[int, str] = {}
        start = 0
        while start < n:
            with self.state.transaction():
                stop = min(n, start + BATCH_CHUNK_ROWS)
                rows = None
                if observe and n >= ONE_PASS_MIN_ROWS:
                    rows = self.state.chunk_features(
                        txs.transaction_id[start:stop],
                        txs.customer_id[start:stop],
                        txs.terminal_id[start:stop],
                        txs.t_us[start:stop],
                        txs.amount[start:stop],
                    )
                if rows is not None and len(rows):
                    windows[start : start + len(rows)] = rows
                    start += len(rows)
                    continue
                # Row by row: a chunk the one-pass path cannot take, or from a retried or late row on while they last.
                stop = min(n, start + STATE_CHUNK_ROWS)
                first = start
                while start < stop and (rows is None or start == first or not self._one_pass_takes(txs, start)):
                    self._score_row(txs, start, windows, conflicts, observe)
                    start += 1
        if self.spec.row_names:
            if txs.row_features is None:
                raise ValueError("this model reads a dataset profile's columns: map requests through its profile")
            out[:, self._n_window :] = txs.row_features
        return out, conflicts

    def _one_pass_takes(self, txs: Transactions, i: int) -> bool:
        """Whether the one-pass path would take row ``i`` now (not a retried id, not a late row)."""
        return self.state.one_pass_prefix(txs.transaction_id[i : i + 1], txs.t_us[i : i + 1]) == 1

    def _score_row(self, txs: Transactions, i: int, out: np.ndarray, conflicts: dict[int, str], observe: bool) -> None:
        """Row ``i`` against the state, one at a time (the reference path); then the state records it."""
        state = self.state
        tid, customer, terminal = txs.transaction_id[i], txs.customer_id[i], txs.terminal_id[i]
        t_us, amount = int(txs.t_us[i]), float(txs.amount[i])
        conflict = state.conflict(tid, customer, terminal, t_us, amount)
        if conflict is not None:
            conflicts[i] = conflict
            return
        out[i] = state.features(tid, customer, terminal, t_us, amount, txs.when(i))
        if observe:
            state.observe(tid, customer, terminal, t_us, amount)

    def result_frame(self, ids: list[str], rows: np.ndarray) -> pl.DataFrame:
        """Score feature rows column-wise: :data:`RESULT_SCHEMA` rows, the same values as :meth:`results`.

        One booster call for the batch (:data:`BATCH_THREADS` threads; up to :data:`PATH_ATTRIBUTION_ROWS` rows
        through :attr:`attributions` instead), reasons by one argsort, no Python object per row.
        """
        n, k = len(ids), self.n_reasons
        if n == 0:
            return pl.DataFrame(schema=RESULT_SCHEMA)
        contributions = self.contributions(rows, self._batch_booster, BATCH_THREADS)
        margins = contributions.sum(axis=1, dtype=np.float64)
        probabilities = 1.0 / (1.0 + np.exp(-margins))
        by_feature = contributions[:, :-1]
        top = np.argsort(-by_feature, axis=1, kind="stable")[:, :k]
        reasons = pl.DataFrame(
            {
                "feature": pl.Series(self._names[top].ravel(), dtype=pl.String),
                "value": np.take_along_axis(rows, top, axis=1).ravel(),
                "contribution": np.take_along_axis(by_feature, top, axis=1).astype(np.float64).ravel(),
            }
        ).to_struct("reasons")
        return pl.DataFrame(
            {
                "transaction_id": pl.Series(ids, dtype=pl.String),
                "fraud_probability": probabilities,
                "decision": np.where(probabilities >= self.threshold, "alert", "approve"),
                "threshold": np.full(n, self.threshold, dtype=np.float64),
                "model_version": pl.Series([self.version], dtype=pl.String).new_from_index(0, n),
                "reasons": reasons.reshape((n, k)).cast(RESULT_SCHEMA["reasons"]),
            }
        )

    def contributions(self, rows: np.ndarray, booster: xgb.Booster | None = None, threads: int = 1) -> np.ndarray:
        """XGBoost's approximate contributions of feature rows (float32, bias column last).

        Up to :data:`PATH_ATTRIBUTION_ROWS` rows come from :attr:`attributions` (the same bits, no DMatrix);
        more rows, or rows with a value infinite in float32 (XGBoost refuses them), from ``booster`` with
        ``threads``.
        """
        if self.attributions is not None and 0 < len(rows) <= PATH_ATTRIBUTION_ROWS:
            values = rows.astype(np.float32)  # what a DMatrix holds
            if not np.isinf(values).any():
                return np.vstack([self.attributions.contributions(row) for row in values])
        return (booster if booster is not None else self.booster).predict(
            xgb.DMatrix(rows, nthread=threads),  # columns in model order by construction: skip the name check
            pred_contribs=True,
            approx_contribs=True,
            iteration_range=self._iteration_range,
            validate_features=False,
        )

    def results(self, txs: list[TransactionIn], rows: np.ndarray) -> list[dict[str, Any]]:
        """Score precomputed feature rows: one :class:`ScoreResponse`-shaped dict per transaction.

        One call gives both the probability and the reasons: XGBoost's path attributions (``approx_contribs``,
        Saabas) add up exactly to the margin, like TreeSHAP, and cost far less than TreeSHAP; a single row's
        come from :class:`PathAttributions` (:meth:`contributions`). The answers are plain data (building
        pydantic objects cost more per row than scoring); :class:`ScoreResponse` documents and checks their shape.
        """
        contributions = self.contributions(rows)
        margins = contributions.sum(axis=1, dtype=np.float64)  # features + bias column
        probabilities = 1.0 / (1.0 + np.exp(-margins))
        by_feature = contributions[:, :-1]
        top = np.argsort(-by_feature, axis=1, kind="stable")[:, : self.n_reasons]
        names, threshold, version = self.feature_names, self.threshold, self.version
        return [
            {
                "transaction_id": tx.transaction_id,
                "fraud_probability": p,
                "decision": "alert" if p >= threshold else "approve",
                "threshold": threshold,
                "model_version": version,
                "reasons": [
                    {"feature": names[i], "value": v, "contribution": c}
                    for i, v, c in zip(idx, values, contribs, strict=True)
                ],
            }
            for tx, p, idx, values, contribs in zip(
                txs,
                probabilities.tolist(),
                top.tolist(),
                np.take_along_axis(rows, top, axis=1).tolist(),
                np.take_along_axis(by_feature, top, axis=1).astype(np.float64).tolist(),
                strict=True,
            )
        ]

    def score_one(self, tx: TransactionIn, observe: bool = True) -> dict[str, Any]:
        """Score one transaction and add it to the online state (the hot path's plain answer).

        Raises :class:`TransactionConflict` if the id is known with other values.
        """
        return self.results([tx], self.features(tx, observe)[None, :])[0]

    def score(self, tx: TransactionIn) -> ScoreResponse:
        """:meth:`score_one` as a checked :class:`ScoreResponse`."""
        return ScoreResponse.model_validate(self.score_one(tx))

    def validate(
        self, records: list[Any], unreadable: dict[int, str] | None = None
    ) -> tuple[Transactions, list[int], list[dict[str, Any]]]:
        """Valid records as columns, the index in ``records`` of each, and the errors of the others by index.

        The whole list is validated in one call when every row is a valid object (the usual case); else row
        by row, for each bad row's reason (``describe_validation_error``).
        """
        if self.requests is not None:
            return self._validate_profiled(records, unreadable)
        unreadable = unreadable or {}
        if not unreadable:
            try:
                valid = _TXS.validate_python(records)
            except ValidationError:
                pass
            else:
                return Transactions.of(valid), list(range(len(records))), []
        txs: list[TransactionIn] = []
        at: list[int] = []
        errors: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            if index in unreadable:
                tid = record.get("transaction_id") if isinstance(record, dict) else None
                errors.append(row_error(index, tid, unreadable[index]))
                continue
            if not isinstance(record, dict):
                errors.append(row_error(index, None, f"the row is not a JSON object but {type(record).__name__}"))
                continue
            try:
                txs.append(_TX.validate_python(record))
                at.append(index)
            except ValidationError as exc:
                errors.append(row_error(index, record.get("transaction_id"), describe_validation_error(exc)))
        return Transactions.of(txs), at, errors

    @property
    def upload_columns(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) columns of a batch file for this model (its profile's layout, or the canonical)."""
        return self.requests.upload_columns if self.requests is not None else (REQUIRED, ())

    def _validate_profiled(
        self, records: list[Any], unreadable: dict[int, str] | None
    ) -> tuple[Transactions, list[int], list[dict[str, Any]]]:
        """:meth:`validate` for requests in the model's dataset-profile layout: mapped as the ingest maps files."""
        assert self.requests is not None
        rows, mapped, at, errors = self.requests.validate(records, unreadable)
        txs = Transactions(
            [r["transaction_id"] for r in rows],
            [r["customer_id"] for r in rows],
            [r["terminal_id"] for r in rows],
            np.fromiter((to_epoch_us(r["tx_datetime"]) for r in rows), dtype=np.int64, count=len(rows)),
            np.fromiter((r["amount"] for r in rows), dtype=np.float64, count=len(rows)),
            self.requests.row_features(mapped) if rows else np.empty((0, len(self.spec.row_names))),
            self.requests.attributes(mapped) if rows else [],
        )
        return txs, at, errors

    def score_batch(
        self, records: list[Any], unreadable: dict[int, str] | None = None, observe: bool = True
    ) -> ScoredBatch:
        """Validate each record; score the valid ones in order, report the others by index.

        ``unreadable`` maps indices of rows already known bad (e.g. a CSV line with the wrong number of
        fields) to their reason.
        """
        txs, at, errors = self.validate(records, unreadable)
        return self.score_columns(len(records), txs, at, errors, observe)

    def score_frame(
        self, frame: pl.DataFrame, unreadable: dict[int, str] | None = None, observe: bool = True
    ) -> ScoredBatch:
        """Score an upload's columns (``service.uploads.Upload.frame``) as :meth:`score_batch` scores its records.

        Typed columns (an event-time column of datetimes, numeric amounts) are checked column-wise; rows that
        pass are exactly the rows :class:`TransactionIn` accepts unchanged. Every other row, and every file with
        text columns (CSV), goes through the per-row validation, with its reasons.
        """
        unreadable = unreadable or {}
        ok = None if self.requests is not None else _plainly_valid(frame)
        if ok is None:
            return self.score_batch(frame.to_dicts(), unreadable, observe)
        for index in unreadable:
            ok[index] = False
        valid = ok.copy()
        fixed: dict[int, TransactionIn] = {}
        errors: list[dict[str, Any]] = []
        suspect = np.flatnonzero(~ok)
        if len(suspect):
            for index, record in zip(suspect.tolist(), frame[suspect].to_dicts(), strict=True):
                if index in unreadable:
                    errors.append(row_error(index, record.get("transaction_id"), unreadable[index]))
                    continue
                try:
                    fixed[index] = _TX.validate_python(record)
                    valid[index] = True
                except ValidationError as exc:
                    errors.append(row_error(index, record.get("transaction_id"), describe_validation_error(exc)))
        ids, customers, terminals = (frame[c].to_list() for c in ("transaction_id", "customer_id", "terminal_id"))
        when = frame["tx_datetime"]
        t_us = (when.dt.replace_time_zone("UTC") if when.dtype.time_zone is None else when).dt.epoch("us")  # type: ignore[attr-defined]
        t_us = t_us.fill_null(0).to_numpy().copy()
        amount = frame["amount"].cast(pl.Float64).fill_null(0.0).to_numpy().copy()
        for index, tx in fixed.items():
            ids[index], customers[index], terminals[index] = tx.transaction_id, tx.customer_id, tx.terminal_id
            t_us[index], amount[index] = to_epoch_us(tx.tx_datetime), tx.amount
        at = np.flatnonzero(valid)
        txs = (
            Transactions(ids, customers, terminals, t_us, amount).take(at)
            if len(at) < frame.height
            else (Transactions(ids, customers, terminals, t_us, amount))
        )
        return self.score_columns(frame.height, txs, at.tolist(), errors, observe)

    def score_columns(
        self,
        received: int,
        txs: Transactions,
        at: list[int],
        errors: list[dict[str, Any]],
        observe: bool = True,
    ) -> ScoredBatch:
        """Score validated transactions (columns; ``at`` their indices in the request, ``errors`` the rest)."""
        if not len(txs):
            return ScoredBatch(received, pl.DataFrame(schema=RESULT_SCHEMA), errors, txs)
        rows, conflicts = self.features_of(txs, observe)
        if conflicts:
            errors = errors + [row_error(at[i], txs.transaction_id[i], reason) for i, reason in conflicts.items()]
            errors.sort(key=lambda e: e["index"])
            keep = np.array([i for i in range(len(txs)) if i not in conflicts], dtype=np.int64)
            txs, rows = txs.take(keep), rows[keep]
        return ScoredBatch(received, self.result_frame(txs.transaction_id, rows), errors, txs)

    def apply_labels(
        self, labels: list[FeedbackItem], label_us: int | None = None, source: str = "feedback"
    ) -> list[bool]:
        """Label events into the online state (terminal risk); whether each transaction was known.

        The labels are known from ``label_us`` (default: now), so terminal risk uses them only for
        transactions at or after that time, as offline (``data.labels``).
        """
        if label_us is None:
            label_us = to_epoch_us(datetime.now(UTC))
        known: list[bool] = []
        for start in range(0, len(labels), STATE_CHUNK_ROWS):  # lock per chunk, as for batches
            with self.state.transaction():
                chunk = labels[start : start + STATE_CHUNK_ROWS]
                known += [self.state.add_label(item.transaction_id, item.is_fraud, label_us, source) for item in chunk]
        return known

    def summary(self) -> dict[str, Any]:
        """What ``GET /model`` answers: version, metrics, data window, threshold, features."""
        card = self.bundle.card
        return {
            "model_version": self.version,
            "mlflow_run_id": card.run_id,
            "threshold": self.threshold,
            "threshold_policy": card.threshold_policy.model_dump() if card.threshold_policy else None,
            "metrics": card.metrics,
            "baseline_metrics": card.baseline_metrics,
            "data_window": card.split.to_dict(),
            "label_delay_days": self.spec.label_delay_days,
            "feature_set": self.spec.feature_set,
            "features": self.feature_names,
            "online_state_transactions": self.state_size(),
            "single_row_reasons": "PathAttributions" if self.attributions is not None else "XGBoost",
            "dataset_profile": self.profile.name if self.profile is not None else None,
            "request_columns": list(self.profile.request_columns) if self.requests is not None else None,  # type: ignore[union-attr]
        }

    @property
    def card(self) -> ModelCard:
        """The loaded model's card."""
        return self.bundle.card

    def state_size(self) -> int:
        """Transactions in the online state (caught up with the other workers)."""
        with self.state.transaction():
            return len(self.state)


def _path_attributions(
    booster: xgb.Booster, iteration_range: tuple[int, int], n_features: int
) -> PathAttributions | None:
    """The model's :class:`PathAttributions`, or None (logged) if it refuses the model or cannot read it."""
    try:
        attributions = PathAttributions.of(booster, iteration_range)
    except Exception as exc:  # an unexpected model dump: keep XGBoost's call rather than fail the load
        _LOG.warning("single-row reasons through XGBoost: could not read the model's trees (%s)", exc)
        return None
    if attributions is not None and attributions.n_features != n_features:
        attributions = None
    if attributions is None:
        _LOG.warning("single-row reasons through XGBoost: PathAttributions does not cover this model")
    return attributions
