"""Requests in a dataset profile's own layout: the schema generated from the profile, and its mapping.

A model trained on a profile with extra columns or without a customer or terminal key (``sparkov``,
``sparkov-extract``, ``ulb-creditcard``, a user's own) is served with a request schema made from that
profile: ``/score`` takes the profile's source columns (``Time``, ``V1``..``V28``, ``Amount`` for ULB), and
so does every row of ``/score_batch``, ``/score_file`` and ``/score_job``. A request goes through the same
:func:`data.sources.to_canonical_frame` the ingest uses, then the canonical checks, then
:func:`features.definitions.row_features`: what the model sees online is what it saw in training.
Profiles of the canonical roles alone (``canonical``, ``handbook``) keep the product's own
:class:`data.contract.TransactionIn` request.
"""

from __future__ import annotations

import datetime as dt
import keyword
from typing import Annotated, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from data.contract import MAX_PLAUSIBLE_AMOUNT, TransactionIn
from data.profiles import Profile, feature_name, has_own_layout
from data.sources import ATTRIBUTE_PREFIX, PARSE_ERRORS, canonical_plan
from features.definitions import FeatureSpec, row_feature_plan
from service.schemas import describe_validation_error, row_error

#: The longest text value a request field takes (as long as an id the online state keeps).
MAX_TEXT = 128


def uses_own_request(profile: Profile | None) -> bool:
    """Whether a model of this profile is served with the profile's own request layout."""
    return profile is not None and has_own_layout(profile)


def _number_as_text(value: object) -> object:
    # A typed file (Parquet) or a JSON client may send a card number as a number: its text is the key.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


Number = Annotated[float, Field(allow_inf_nan=False)]


Text = Annotated[str, BeforeValidator(_number_as_text), Field(min_length=1, max_length=MAX_TEXT)]


def _field_name(column: str) -> str:
    name = column if column.isidentifier() and not keyword.iskeyword(column) else feature_name(column)
    if not name or not name.isidentifier() or name.startswith("_") or keyword.iskeyword(name):
        name = "f_" + name
    return name


def request_model(profile: Profile) -> type[BaseModel]:
    """The pydantic model of one transaction in the profile's layout (fields named as the source columns).

    Roles the features need are required (id column, event time, keys, amount); extra feature columns
    are optional (missing = unknown to the model). Numbers are numbers, everything else text; a key or
    id sent as an integer is taken as its text.
    """
    numbers = profile.number_columns
    required = {profile.event_time.column, profile.amount}
    required |= {profile.transaction_id.column} if profile.transaction_id.column else set()
    for key in (profile.customer, profile.terminal):
        required |= set(key.columns) if key else set()
    fields: dict[str, Any] = {}
    for column in profile.request_columns:
        number = column in numbers
        kind: Any = Number if number else Text
        about = f"Source column {column!r} of the {profile.name} layout."
        if column == profile.amount:
            spec = Field(alias=column, ge=0, le=MAX_PLAUSIBLE_AMOUNT, description="Amount, >= 0.")
        elif column == profile.event_time.column:
            unit = profile.event_time.unit
            how = (
                f"{unit} after {profile.event_time.origin}"
                if unit
                else (f"text in {profile.event_time.format!r}" if profile.event_time.format else "ISO 8601")
            )
            bound = 100 * 366 * 86_400 * (1 if unit == "s" else 1_000)  # the ingest's own limit
            spec = Field(
                alias=column, description=f"Event time: {how}.", **({"ge": -bound, "le": bound} if unit else {})
            )
        elif column in required:
            spec = Field(alias=column, description=about)
        else:
            kind = kind | None
            spec = Field(None, alias=column, description=about + " Optional: missing is unknown to the model.")
        fields[_field_name(column)] = (kind, spec)
    title = "".join(part.capitalize() for part in feature_name(profile.name).split("_")) + "Transaction"
    model = create_model(
        title,
        __config__=ConfigDict(extra="forbid", populate_by_name=False, str_strip_whitespace=True, title=title),
        __doc__=f"One transaction in the {profile.name} layout (the served model's dataset profile).",
        **fields,
    )
    return model


#: Canonical field -> the profile's source column(s) it came from, for error messages in the caller's terms.
def _source_names(profile: Profile) -> dict[str, str]:
    names = {"tx_datetime": profile.event_time.column, "amount": profile.amount}
    if profile.transaction_id.column:
        names["transaction_id"] = profile.transaction_id.column
    for role, key in (("customer_id", profile.customer), ("terminal_id", profile.terminal)):
        if key is not None:
            names[role] = "+".join(key.columns)
    return names


class ProfiledRequests:
    """Validates and maps requests of one profile to scoring columns (the scorer's ``validate`` for such models)."""

    def __init__(self, profile: Profile, spec: FeatureSpec) -> None:
        self.profile = profile
        self.spec = spec
        self.model = request_model(profile)
        self._one = TypeAdapter(self.model)
        self._columns = list(profile.request_columns)
        self._names = _source_names(profile)
        self._canonical = TypeAdapter(TransactionIn)
        # Requests are text columns in a fixed layout: their mapping and row features are built once.
        self._plan = canonical_plan(profile, dict.fromkeys(self._columns, pl.String()), numbers_checked=True)
        self._row_plan: list[pl.Expr] | None = None

    def validate(
        self, records: list[Any], unreadable: dict[int, str] | None = None
    ) -> tuple[list[dict[str, Any]], pl.DataFrame, list[int], list[dict[str, Any]]]:
        """(canonical rows as dicts, their mapped frame with attributes, their indices, errors of the others)."""
        unreadable = unreadable or {}
        texts: list[dict[str, str | None]] = []
        at: list[int] = []
        errors: list[dict[str, Any]] = []
        id_column = self.profile.transaction_id.column
        for index, record in enumerate(records):
            tid = record.get(id_column) if id_column and isinstance(record, dict) else None
            if index in unreadable:
                errors.append(row_error(index, tid, unreadable[index]))
                continue
            if not isinstance(record, dict):
                errors.append(row_error(index, None, f"the row is not a JSON object but {type(record).__name__}"))
                continue
            try:
                valid = self._one.validate_python(self._as_text(record)).model_dump(by_alias=True)
            except ValidationError as exc:
                errors.append(row_error(index, tid, describe_validation_error(exc)))
                continue
            texts.append({c: None if valid[c] is None else _text(valid[c]) for c in self._columns})
            at.append(index)
        if not texts:
            return [], pl.DataFrame(), [], errors
        raw = pl.DataFrame(texts, schema=dict.fromkeys(self._columns, pl.String), orient="row")
        mapped = raw.select(self._plan)  # to_canonical_frame's mapping; the request model checked the numbers
        rows: list[dict[str, Any]] = []
        keep: list[int] = []
        for position, row in enumerate(
            mapped.select(
                "transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", PARSE_ERRORS
            ).iter_rows(named=True)
        ):
            index = at[position]
            if row[PARSE_ERRORS] is not None:
                errors.append(row_error(index, row["transaction_id"], row[PARSE_ERRORS]))
                continue
            problem = self._canonical_problem(row)
            if problem is not None:
                errors.append(row_error(index, row["transaction_id"], problem))
                continue
            rows.append(row)
            keep.append(position)
        errors.sort(key=lambda e: e["index"])
        return rows, mapped[keep], [at[p] for p in keep], errors

    def _as_text(self, record: dict[str, Any]) -> dict[str, Any]:
        """A typed file's dates and times (Parquet) as the text the profile parses (its formats)."""
        if not any(isinstance(v, dt.date) for v in record.values()):
            return record
        role, age = self.profile.event_time, self.profile.derived.age_from
        out = dict(record)
        for column, value in record.items():
            if isinstance(value, dt.datetime) and column == role.column and role.format:
                out[column] = value.strftime(role.format)
            elif isinstance(value, dt.datetime):
                out[column] = value.isoformat()
            elif isinstance(value, dt.date) and age is not None and column == age.column:
                out[column] = value.strftime(age.format)
            elif isinstance(value, dt.date):
                out[column] = value.isoformat()
        return out

    def _canonical_problem(self, row: dict[str, Any]) -> str | None:
        """The product's own checks (an event time not in the future, ids the state can keep), in source terms."""
        try:
            self._canonical.validate_python({k: row[k] for k in TransactionIn.model_fields})
        except ValidationError as exc:
            text = describe_validation_error(exc)
            for canonical, source in self._names.items():
                text = text.replace(f"{canonical}:", f"{source}:")
            return text
        return None

    @property
    def upload_columns(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) columns of a batch file in this layout."""
        fields = self.model.model_fields.values()
        required = tuple(f.alias for f in fields if f.alias and f.is_required())
        return required, tuple(f.alias for f in fields if f.alias and not f.is_required())

    def attributes(self, mapped: pl.DataFrame) -> list[str]:
        """Per mapped request, its ``attr_*`` columns as a JSON object (what the service log keeps for the lake)."""
        names = [c for c in mapped.columns if c.startswith(ATTRIBUTE_PREFIX)]
        if not names:
            return ["{}"] * mapped.height
        return mapped.select(pl.struct(names).struct.json_encode()).to_series().to_list()

    def row_features(self, mapped: pl.DataFrame) -> np.ndarray:
        """The row features of mapped requests (``spec.row_names`` columns)."""
        if not self.spec.row_names:
            return np.empty((mapped.height, 0))
        if self._row_plan is None:
            self._row_plan = row_feature_plan(self.spec, tuple(mapped.columns))
        return mapped.select(self._row_plan).to_numpy()


def _text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)
