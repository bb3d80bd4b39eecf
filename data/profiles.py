"""Dataset profiles: how a source file's columns map to the product's transaction record.

A profile is YAML validated by :class:`Profile` (the shipped ones are in ``profiles/``; a user's own is
passed as ``--profile FILE``). It names each role's source column (or how to derive it), the extra
columns that become model features, and so which feature families apply:

- ``transaction_id``: a column, or ``derive: true`` (a hash of the row's values in the profile's
  columns, label aside, numbers compared as numbers: two identical rows are one transaction, and a
  row sent for scoring gets the id its file row has);
- ``event_time``: a column with an optional ``strptime`` format (default ISO 8601), or numbers relative
  to an ``origin`` (``unit: s``, as ULB's ``Time``);
- ``customer`` / ``terminal``: a column, or ``hash_of`` several (a stable pseudonym of their joint
  values, e.g. dob + job + lat + long for a card holder without a card number); either may be absent,
  and then its window features are not computed;
- ``amount``, ``label`` (optional) and ``scenario`` (generator ground truth, kept for analysis);
- ``numeric``: columns that are model features as they are (empty = missing, which XGBoost handles);
  ``categorical``: columns encoded as the position of their value in the listed vocabulary (-1 for a
  value not listed or missing; the order is the profile's, typically most frequent first);
- ``derived``: ``age_from`` (card holder's age in years at the transaction, from a date of birth) and
  ``distance_km`` (great-circle distance between two coordinate pairs, e.g. card holder and merchant).

``strip_quotes: true`` removes one pair of quotes around customer and terminal key values (an export
that quoted its text twice). Every other column is kept in the lake as a text attribute
(``attr_<name>``), never a feature; those listed in ``keep`` may also come with a scoring request.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Folder of the shipped profiles (one ``<name>.yaml`` each).
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
#: Columns a CSV writer adds as a row index (pandas ``to_csv``); never data.
INDEX_COLUMNS = frozenset({"", "Unnamed: 0", "index"})
#: Names of the time and window features an extra column must not take (``features.definitions``).
FEATURE_NAME_STEMS = ("tx_amount", "tx_during_weekend", "tx_during_night")
#: Vocabulary size ``profile infer`` proposes for a categorical column at most.
MAX_VOCABULARY = 50


class ProfileError(ValueError):
    """A profile that cannot be read, or a file that no profile fits."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdRole(_Strict):
    """The transaction id: a column, or derived from the row's content."""

    column: str | None = None
    derive: bool = Field(False, description="Hash of the row's content (two identical rows are one transaction).")

    @model_validator(mode="after")
    def _one_way(self) -> IdRole:
        if (self.column is None) == (not self.derive):
            raise ValueError("transaction_id: give either a column or derive: true")
        return self


class TimeRole(_Strict):
    """The event time: text in ``format`` (``strptime``; default ISO 8601) or numbers of ``unit`` after ``origin``."""

    column: str
    format: str | None = None
    unit: Literal["s", "ms"] | None = None
    origin: datetime | None = None

    @model_validator(mode="after")
    def _relative_needs_origin(self) -> TimeRole:
        if (self.unit is None) != (self.origin is None):
            raise ValueError("event_time: unit and origin go together (numbers relative to the origin)")
        if self.unit is not None and self.format is not None:
            raise ValueError("event_time: a format is for text times, a unit and origin for relative numbers")
        return self


class KeyRole(_Strict):
    """A grouping key (customer or terminal): a column, or a stable hash of several."""

    column: str | None = None
    hash_of: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> KeyRole:
        if (self.column is None) == (self.hash_of is None):
            raise ValueError("a key is either a column or hash_of: [columns]")
        if self.hash_of is not None and not self.hash_of:
            raise ValueError("hash_of needs at least one column")
        return self

    @property
    def columns(self) -> tuple[str, ...]:
        """The source columns the key reads."""
        return (self.column,) if self.column is not None else tuple(self.hash_of or ())


class DateOfBirth(_Strict):
    """A date-of-birth column and its ``strptime`` format."""

    column: str
    format: str = "%Y-%m-%d"


class Derived(_Strict):
    """Features derived from several columns where the source has them."""

    age_from: DateOfBirth | None = None
    distance_km: tuple[str, str, str, str] | None = Field(
        None, description="lat, long of the card holder, lat, long of the merchant."
    )

    @property
    def columns(self) -> tuple[str, ...]:
        """Source columns the derived features read."""
        return ((self.age_from.column,) if self.age_from else ()) + (self.distance_km or ())

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the derived features."""
        return (("age_years",) if self.age_from else ()) + (("distance_km",) if self.distance_km else ())


class SplitDays(_Strict):
    """How a dataset is split for training when the command line does not say (train | valid | test by time).

    ``end``: the last day of data to train and test on (a file whose newest days hold one class only);
    ``label_delay_days``: when this dataset's own labels are known (FRAUDOPS_LABEL_DELAY_DAYS wins when set);
    ``valid_hours``/``test_hours``: hourly windows instead of days, for a dataset of a few days (ULB's two).
    """

    valid_days: int = Field(7, ge=1, le=365)
    test_days: int = Field(7, ge=1, le=365)
    label_delay_days: int | None = Field(None, ge=0, le=60)
    end: date | None = None
    #: Hourly windows for data of a few days (both set: they replace the day windows).
    valid_hours: int | None = Field(None, ge=1, le=24 * 30)
    test_hours: int | None = Field(None, ge=1, le=24 * 30)

    @model_validator(mode="after")
    def _both_hours(self) -> SplitDays:
        if (self.valid_hours is None) != (self.test_hours is None):
            raise ValueError("valid_hours and test_hours go together")
        return self

    @property
    def hourly(self) -> bool:
        """Whether the split is in hours (``valid_hours``/``test_hours``) rather than days."""
        return self.valid_hours is not None


class Profile(_Strict):
    """How one dataset layout maps to the canonical record, and which feature families it supports."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    transaction_id: IdRole
    event_time: TimeRole
    customer: KeyRole | None = None
    terminal: KeyRole | None = None
    amount: str
    label: str | None = None
    scenario: str | None = None
    numeric: tuple[str, ...] = ()
    categorical: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    derived: Derived = Derived()
    ignore: tuple[str, ...] = Field((), description="Source columns dropped on read (e.g. duplicates of mapped ones).")
    keep: tuple[str, ...] = Field(
        (), description="Other columns of the layout a scoring request may carry: kept as attributes, never features."
    )
    split: SplitDays = SplitDays()
    strip_quotes: bool = Field(
        False, description='Key values wrapped in quotes ("Kub, Mann") lose them: exports that quote twice.'
    )

    @model_validator(mode="after")
    def _distinct_features(self) -> Profile:
        roles = {self.event_time.column, self.amount, self.label, self.scenario, self.transaction_id.column}
        for key in (self.customer, self.terminal):
            roles |= {key.column} if key and key.column else set()
        taken = sorted(roles.intersection([*self.numeric, *self.categorical]) - {None})  # type: ignore[type-var]
        if taken:
            raise ValueError(f"{taken} already have a role (id, time, key, amount, label): not also an extra feature")
        reserved = set(FEATURE_NAME_STEMS)
        clash = sorted(n for n in self.numeric_features if n in reserved or n.startswith(("customer_", "terminal_")))
        if clash:
            raise ValueError(f"extra features {clash} would have the name of a window feature: rename the column")
        names = [*self.numeric_features, *(n for n, _ in self.categorical_features)]
        if len(set(names)) != len(names):
            raise ValueError(f"two extra features have the same name: {sorted(names)}")
        if self.customer is None and self.terminal is None and not names:
            raise ValueError("no customer, no terminal and no numeric or categorical columns: nothing to learn from")
        return self

    # --- columns ---------------------------------------------------------------------------------

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Source columns a file must have (every role but the label and scenario)."""
        cols: list[str] = [self.event_time.column, self.amount]
        if self.transaction_id.column:
            cols.append(self.transaction_id.column)
        for key in (self.customer, self.terminal):
            if key is not None:
                cols += key.columns
        cols += [*self.numeric, *self.categorical, *self.derived.columns]
        return tuple(dict.fromkeys(cols))

    @property
    def request_columns(self) -> tuple[str, ...]:
        """Source columns one transaction sent for scoring may carry (no label, no scenario)."""
        return tuple(dict.fromkeys((*self.required_columns, *self.keep)))

    @property
    def number_columns(self) -> frozenset[str]:
        """Source columns holding numbers (amount, numeric and coordinate columns, a relative time)."""
        numbers = {self.amount, *self.numeric, *(self.derived.distance_km or ())}
        return frozenset(numbers | ({self.event_time.column} if self.event_time.unit else set()))

    @property
    def numeric_features(self) -> tuple[str, ...]:
        """Model features of the numeric and derived columns (lower snake case), in order."""
        return tuple(feature_name(c) for c in self.numeric) + self.derived.feature_names

    @property
    def categorical_features(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(feature name, vocabulary) of each categorical column."""
        return tuple((feature_name(c) + "_code", tuple(v)) for c, v in self.categorical.items())

    @property
    def families(self) -> dict[str, bool]:
        """Which window feature families apply."""
        return {"customer": self.customer is not None, "terminal": self.terminal is not None}

    def missing(self, columns: list[str] | tuple[str, ...]) -> list[str]:
        """Required columns not among ``columns``."""
        present = set(columns)
        return [c for c in self.required_columns if c not in present]

    def to_yaml(self) -> str:
        """The profile as YAML (what ``profile infer`` writes and the lake and model card keep)."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False, allow_unicode=True)

    @property
    def digest(self) -> str:
        """Identity of the profile's content (12 hex characters)."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()[:12]

    def feature_compatible(self, other: Profile) -> bool:
        """Whether data of both profiles can share a lake and a model: the same features and the same keys.

        The same extra columns read the same way (a date-of-birth format, a vocabulary) and keys built
        from the same columns, so one card holder is one customer whichever file brought the row.
        """
        return self._feature_identity() == other._feature_identity()

    def _feature_identity(self) -> tuple[object, ...]:
        # A key column's values are the ids themselves whatever its name; a hashed key depends on its columns.
        keys = tuple(None if k is None else (k.hash_of or "column") for k in (self.customer, self.terminal))
        derived = self.derived.model_dump(mode="json")
        return (keys, self.event_time.unit is None, self.numeric, tuple(self.categorical.items()), derived)


def feature_name(column: str) -> str:
    """Lower snake case of a source column name (``V1`` -> ``v1``, ``city pop`` -> ``city_pop``)."""
    return "".join(ch if ch.isalnum() else "_" for ch in column.strip().lower()).strip("_")


def load_profile(source: str | Path) -> Profile:
    """A shipped profile by name, or a profile file by path."""
    path = Path(source)
    if not path.suffix and not path.exists():
        path = PROFILES_DIR / f"{source}.yaml"
        if not path.exists():
            raise ProfileError(f"no profile named {source!r}; shipped: {', '.join(shipped_profile_names())}")
    return parse_profile(path)


def parse_profile(path: Path) -> Profile:
    """Read and validate a profile file; errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ProfileError(f"{path}: no such profile file") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not valid YAML (not UTF-8 text)") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return profile_from_dict(data, str(path))


def profile_from_dict(data: object, origin: str = "profile") -> Profile:
    """Validate a profile's mapping (from YAML or a model card)."""
    if not isinstance(data, dict):
        raise ProfileError(f"{origin}: a profile is a mapping of roles to columns")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"{origin}: {problems}") from None


def shipped_profile_names() -> list[str]:
    """Names of the profiles in ``profiles/``."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def shipped_profiles() -> list[Profile]:
    """The shipped profiles, most specific (most required columns) first."""
    return sorted((parse_profile(PROFILES_DIR / f"{n}.yaml") for n in shipped_profile_names()), key=_specificity)


def _specificity(profile: Profile) -> tuple[int, str]:
    return (-len(profile.required_columns), profile.name)


def detect_profile(columns: list[str]) -> Profile:
    """The most specific shipped profile whose required columns are all present.

    Otherwise :class:`ProfileError` names the closest profile (most of its columns present) and what it misses.
    """
    header = [c for c in columns if c not in INDEX_COLUMNS]
    candidates = shipped_profiles()
    for profile in candidates:
        if not profile.missing(header):
            return profile
    closest = min(candidates, key=lambda p: (len(p.missing(header)) - len(p.required_columns), len(p.missing(header))))
    shown = ", ".join(header[:15]) + (", ..." if len(header) > 15 else "")
    raise ProfileError(
        f"no shipped profile fits the columns [{shown}]; the closest is {closest.name!r}, which needs "
        f"{closest.missing(header)}. Write a profile for this layout (start from `fraudops profile infer FILE`) "
        "and pass it with --profile FILE"
    )


def infer_profile(columns: dict[str, list[str]], name: str) -> Profile:
    """A profile proposed from a sample (column -> its values as text), for a person to check and edit.

    Roles are guessed from names (id, time, customer/card, merchant/terminal, amount, label) and
    values; other numeric columns become ``numeric`` features and text columns with few distinct
    values ``categorical`` (most frequent first). A role it cannot find is left for the person.
    """
    names = [c for c in columns if c not in INDEX_COLUMNS]
    lowered = {c: c.lower() for c in names}

    def pick(*hints: str, exclude: set[str] = frozenset()) -> str | None:  # type: ignore[assignment]
        for hint in hints:
            for c in names:
                if c not in exclude and hint in lowered[c]:
                    return c
        return None

    used: set[str] = set()
    tx_id = pick("transaction_id", "trans_num", "tx_id", "txn_id")
    time_col = pick("datetime", "date_time", "timestamp", "trans_date", "time", "date")
    used |= {c for c in (tx_id, time_col) if c}
    label = pick("is_fraud", "fraud", "class", "label", exclude=used)
    used |= {label} if label else set()
    amount = pick("amount", "amt", "tx_amount", "value", exclude=used)
    used |= {amount} if amount else set()
    customer = pick("customer", "cc_num", "card", "account", exclude=used)
    used |= {customer} if customer else set()
    terminal = pick("terminal", "merchant", "merch_id", exclude=used)
    used |= {terminal} if terminal else set()
    if time_col is None or amount is None:
        raise ProfileError(
            f"cannot guess the event time or the amount column from {names[:15]}; write the profile by hand"
        )
    event_time: dict[str, object] = {"column": time_col}
    sample_time = next((v for v in columns[time_col] if v), "")
    if _is_number(sample_time):
        # Large numbers are Unix seconds; small ones count from the file's start (ULB's Time): an origin
        # the person must check (the ULB profile's is 2013-09-01).
        epoch = float(sample_time) > 1e8
        event_time |= {"unit": "s", "origin": "1970-01-01T00:00:00Z" if epoch else "2013-09-01T00:00:00Z"}
    elif fmt := _guess_time_format(sample_time):
        event_time["format"] = fmt
    numeric: list[str] = []
    categorical: dict[str, list[str]] = {}
    # Never a feature: ground truth and anything else about fraud (it would leak the label), and other
    # spellings of the event time (seconds, days, unix time).
    unsafe = ("fraud", "scenario", "label", "class", "time", "date", "unix")
    for c in names:
        if c in used or any(word in lowered[c] for word in unsafe):
            continue
        values = [v for v in columns[c] if v]
        if values and all(_is_number(v) for v in values):
            numeric.append(c)
        elif values:
            counts: dict[str, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            if len(counts) <= MAX_VOCABULARY and len(counts) < len(values) / 2:
                categorical[c] = sorted(counts, key=lambda v: (-counts[v], v))
    data: dict[str, object] = {
        "name": name,
        "description": "Proposed by `fraudops profile infer`: check every role before use.",
        "transaction_id": {"column": tx_id} if tx_id else {"derive": True},
        "event_time": event_time,
        "amount": amount,
        "numeric": numeric,
        "categorical": categorical,
    }
    if customer:
        data["customer"] = {"column": customer}
    if terminal:
        data["terminal"] = {"column": terminal}
    if label:
        data["label"] = label
    return profile_from_dict(data, "inferred profile")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%d %H:%M",
)


def _guess_time_format(text: str) -> str | None:
    """The first known format that parses ``text`` (None: leave it to ISO 8601 parsing)."""
    for fmt in _TIME_FORMATS:
        try:
            datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return None if fmt.startswith("%Y-%m-%d") else fmt
    return None


def source_request(profile: Profile | None, row: dict[str, object], transaction_id: str) -> dict[str, object]:
    """A lake row (canonical columns and ``attr_*`` text) as a scoring request in the profile's layout.

    The inverse of the ingest's mapping for the request columns: the event time written back in its
    format (or as seconds after the origin), keys and amount from the canonical columns, the other
    columns from their attributes (numbers as numbers); ``keep`` columns (names, addresses: not needed to
    score) are left out. Without a profile of its own layout (``None``,
    ``canonical``, ``handbook``), the product's own request. ``transaction_id`` replaces the row's id
    where the layout has an id column (a derived id follows from the values).
    """
    when = row["tx_datetime"]
    assert isinstance(when, datetime)
    if profile is None or not has_own_layout(profile):
        return {
            "transaction_id": transaction_id,
            "tx_datetime": when.isoformat(),
            "customer_id": row["customer_id"],
            "terminal_id": row["terminal_id"],
            "amount": row["amount"],
        }
    request: dict[str, object] = {}
    role = profile.event_time
    for column in profile.request_columns:
        if column == profile.transaction_id.column:
            value: object = transaction_id
        elif column == role.column:
            if role.unit and role.origin is not None:
                origin = role.origin if role.origin.tzinfo else role.origin.replace(tzinfo=when.tzinfo)
                value = (when - origin).total_seconds() * (1 if role.unit == "s" else 1_000)
            else:
                value = when.strftime(role.format) if role.format else when.isoformat()
        elif column == profile.amount:
            value = row["amount"]
        elif profile.customer is not None and column == profile.customer.column:
            value = row["customer_id"]
        elif profile.terminal is not None and column == profile.terminal.column:
            value = row["terminal_id"]
        elif column in profile.keep and column not in profile.required_columns:
            continue  # not needed to score (names, addresses): left out of what a form shows
        else:
            text = row.get("attr_" + feature_name(column))
            value = None if text is None else (float(str(text)) if column in profile.number_columns else text)
        request[column] = value
    return request


def has_own_layout(profile: Profile) -> bool:
    """Whether requests of this profile's models use its source columns rather than the canonical record.

    The canonical request fits a profile whose roles are plain columns a client can fill with the same
    values (``handbook``); any extra feature column, a missing key, a key hashed from several columns, a
    derived id or a relative time needs the layout itself (a client cannot compute our pseudonyms).
    """
    hashed = any(k is not None and k.hash_of for k in (profile.customer, profile.terminal))
    return (
        bool(profile.numeric or profile.categorical or profile.derived.columns)
        or not (profile.customer and profile.terminal)
        or hashed
        or profile.transaction_id.derive
        or profile.event_time.unit is not None
    )
