"""Window features of a chunk of new transactions in one NumPy pass, bit for bit what one at a time gives.

:func:`features.definitions.online_features` answers one transaction with a handful of window queries on
the store, and the scorer records it before the next one. For a chunk of transactions in arrival order,
:func:`chunk_window_features` computes the same vectors for all of them at once: each row sees the store's
events plus the chunk rows that arrived before it (never a later one, even if earlier in time), as if
each earlier row had been recorded first.

How, per key family (customers, terminals):

- The store's events of the chunk's keys within the look-back are gathered once per key (one slice of
  each key's time-sorted ``array.array``: a memcpy) into arrays; every window count is two binary
  searches over (key, time) packed into one int64.
- What earlier chunk rows add is taken from every (earlier, later) pair of chunk rows of the same key;
  a chunk holds few such pairs (the caller goes row by row when there are too many).
- Amount sums are exact: every amount is split into two integers at one common binary scale (a high
  part and a low 48-bit part, see :func:`_exact_parts`), summed as int64 prefix sums, and rounded once
  to a float. That is the correctly rounded sum, which is what ``math.fsum`` returns on the row path,
  whatever the order of the terms.

Label-based counts (terminal risk, known frauds) read only the store's fraud candidates, since chunk rows
have no label yet; they cost a dictionary lookup per row when a key has none.

:func:`usable_prefix` says how many leading rows a chunk's one pass answers: up to the first id already
known or repeated in the chunk (retries and conflicts: the row path's rules) or the first row older than the
newest event by more than the eviction slack (what the row path sees then depends on when eviction ran).
:func:`chunk_window_features` returns None when amounts or keys do not fit the exact arithmetic, or a chunk
holds too many same-key pairs.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from features.definitions import KNOWN_RISK_DAYS, US_PER_DAY, US_PER_HOUR

if TYPE_CHECKING:
    from features.stores.memory import MemoryFeatureStore

#: Bits of the low part of an exact amount (see :func:`_exact_parts`).
LOW_BITS = 48
#: Events one key's window may hold for its low parts' sum to stay in an int64.
MAX_WINDOW_EVENTS = 2**14
_LOW_MASK = (1 << LOW_BITS) - 1
#: Same-key (earlier, later) row pairs a chunk may hold per row before the caller goes row by row.
MAX_PAIRS_PER_ROW = 32
#: (key, time) packed into one int64 must stay below this.
_PACK_LIMIT = 2**62


def _exact_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``values`` (finite, >= 0) as exact integers ``hi * 2**LOW_BITS + lo`` at the scale ``2**scale``.

    Each value is ``M * 2**(e - 53)`` with ``M < 2**53`` (``np.frexp``); at ``scale = 53 - min(e)`` every
    value is the integer ``M << (e - min(e))``. None when the values span too many binades (their integers
    would not fit) or their total would not fit in the rounding of :func:`_to_float` (below ``2**101`` at that
    scale). Prefix sums of the parts may wrap around in int64: a window's sum is a difference of two of them,
    exact modulo ``2**64``, so exact as long as the window's own sum fits.
    """
    if (values < 0).any():
        return None
    mantissa, exponent = np.frexp(values)
    positive = values > 0
    if not positive.any():
        return np.zeros(len(values), np.int64), np.zeros(len(values), np.int64), 0
    lowest, highest = int(exponent[positive].min()), int(exponent[positive].max())
    scale = 53 - lowest
    if lowest < -1000 or highest > 900 or highest - lowest > 50 or float(values.sum()) >= 2.0 ** (100 - scale):
        return None
    whole = (mantissa * 2.0**53).astype(np.int64)  # exact: the mantissa's 53 bits
    shift = np.where(positive, exponent - lowest, 0).astype(np.int64)
    above = shift >= LOW_BITS
    hi = np.where(above, whole << np.where(above, shift - LOW_BITS, 0), whole >> np.where(above, 0, LOW_BITS - shift))
    low_bits = np.where(above, 0, LOW_BITS - shift)
    lo = np.where(above, 0, (whole & ((np.int64(1) << low_bits) - 1)) << np.where(above, 0, shift))
    return hi, lo, scale


def _to_float(hi: np.ndarray, lo: np.ndarray, scale: int) -> np.ndarray:
    """The exact integer sums ``hi * 2**LOW_BITS + lo`` (``lo`` >= 0, any size) rounded once, times ``2**-scale``.

    After the carry, ``hi * 2**LOW_BITS`` and ``lo`` are both exact floats, and one IEEE addition rounds their
    exact sum correctly (ties to even, as ``math.fsum``); the power-of-two scaling is exact.
    """
    hi = hi + (lo >> LOW_BITS)
    lo = lo & _LOW_MASK
    return (hi.astype(np.float64) * 2.0**LOW_BITS + lo.astype(np.float64)) * 2.0**-scale


def _codes(keys: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Small integer codes per row (first appearance order) and the distinct keys."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=len(keys))
    return codes, list(index)


class _Pairs:
    """Every (earlier, later) pair of chunk rows with the same key: ``later[p]`` arrived after ``earlier[p]``."""

    def __init__(self, codes: np.ndarray) -> None:
        n = len(codes)
        order = np.argsort(codes, kind="stable")  # a key's rows in arrival order
        sorted_codes = codes[order]
        starts = np.ones(n, dtype=bool)
        np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=starts[1:])
        group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        before = np.arange(n) - group_start  # earlier rows of the same key
        total = int(before.sum())
        self.count = total
        if total == 0 or total > MAX_PAIRS_PER_ROW * max(n, 1):
            self.later = self.earlier = np.empty(0, dtype=np.int64)
            return
        offsets = np.cumsum(before) - before
        step = np.arange(total) - np.repeat(offsets, before)
        self.later = np.repeat(order, before)
        self.earlier = order[np.repeat(group_start, before) + step]


class _History:
    """The store's events of the chunk's keys in ``(lo, hi]``, grouped by key code, each key's in time order.

    Amounts and terminal marks only when ``values`` (a customer's); a terminal's series carries times alone.
    """

    def __init__(
        self, index: dict, keys: list[str], lo: int, hi: int, origin: int, span: int, values: bool = True
    ) -> None:
        times, amounts, marks = array("q"), array("d"), array("q")
        lengths = np.zeros(len(keys), dtype=np.int64)
        right = bisect.bisect_right
        for code, key in enumerate(keys):
            series = index.get(key)
            if series is None:
                continue
            i, j = right(series.times, lo), right(series.times, hi)
            if i < j:
                times += series.times[i:j]  # unboxed slices: memcpy
                if values:
                    amounts += series.values[i:j]
                    marks += series.keys[i:j]
                lengths[code] = j - i
        self.code = np.repeat(np.arange(len(keys), dtype=np.int64), lengths)
        self.t = np.frombuffer(times, dtype=np.int64) if times else np.empty(0, np.int64)
        self.values = np.frombuffer(amounts, dtype=np.float64) if amounts else np.empty(0, np.float64)
        self.marks = np.frombuffer(marks, dtype=np.int64) if marks else np.empty(0, np.int64)
        self.origin, self.span = origin, span
        self.packed = self.code * span + (self.t - origin)

    def pack(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        return codes * self.span + (t - self.origin)

    def upto(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Per row, the position after its key's last event at or before ``t``."""
        return np.searchsorted(self.packed, self.pack(codes, t), side="right")

    def count(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Per row, its key's events with ``lo < t <= hi``."""
        return self.upto(codes, hi) - self.upto(codes, lo)


def usable_prefix(store: MemoryFeatureStore, transaction_ids: Sequence[str], t_us: np.ndarray) -> int:
    """How many leading rows :func:`chunk_window_features` answers: up to the first retried or late row.

    A row is retried when its id is in the store or earlier in the chunk, and late when its longest look-back
    reaches events the row path may have forgotten by then (at or before the newest event before it minus the
    store's horizon): its answer then depends on eviction's timing. That is a row older than the newest event by
    more than the eviction slack.
    """
    # The row path forgets events at or before newest - horizon; no window of a row taken here may reach them.
    look_back = store.spec.history_days * US_PER_DAY
    seen, ids = store._seen, set()
    n = len(transaction_ids)
    for i, tid in enumerate(transaction_ids):
        if tid in seen or tid in ids:
            n = i
            break
        ids.add(tid)
    if n == 0:
        return 0
    times = np.asarray(t_us[:n], dtype=np.int64)
    newest_before = np.empty(n, dtype=np.int64)
    newest_before[0] = -(2**62) if store._newest_us is None else store._newest_us
    np.maximum(np.maximum.accumulate(times)[:-1], newest_before[0], out=newest_before[1:])
    late = np.flatnonzero(times <= newest_before - store.horizon_us + look_back)
    return int(late[0]) if len(late) else n


def chunk_window_features(
    store: MemoryFeatureStore,
    transaction_ids: Sequence[str],
    customer_ids: Sequence[str],
    terminal_ids: Sequence[str],
    t_us: np.ndarray,
    amount: np.ndarray,
) -> np.ndarray | None:
    """Window features (``spec.window_names`` order) of the :func:`usable_prefix` of transactions in arrival order.

    Each row is computed against the store plus the rows before it, exactly as :func:`online_features`
    computes it when the rows are scored and recorded one at a time (see the module docstring). Nothing
    is recorded here. None when the amounts or keys do not fit the exact arithmetic (go row by row).
    """
    spec = store.spec
    n = usable_prefix(store, transaction_ids, t_us)
    if n == 0:
        return np.empty((0, len(spec.window_names)), dtype=np.float64)
    transaction_ids, customer_ids, terminal_ids = transaction_ids[:n], customer_ids[:n], terminal_ids[:n]
    t_us = np.asarray(t_us[:n], dtype=np.int64)
    amount = np.asarray(amount[:n], dtype=np.float64)
    if np.signbit(amount).any() or not np.isfinite(amount).all():
        return None

    day = US_PER_DAY
    longest_us = spec.longest_window_days * day
    t_min, t_max = int(t_us.min()), int(t_us.max())
    origin = t_min - max(spec.history_days * day, longest_us, KNOWN_RISK_DAYS * day, US_PER_HOUR) - 1
    span = t_max - origin + 1
    if n * span >= _PACK_LIMIT:
        return None

    columns: dict[str, np.ndarray] = {}
    days = t_us // day
    columns["tx_amount"] = amount.copy()
    columns["tx_during_weekend"] = ((days + 3) % 7 + 1 >= 6).astype(np.float64)  # 1970-01-01 was a Thursday
    columns["tx_during_night"] = ((t_us // US_PER_HOUR) % 24 <= spec.night_end_hour).astype(np.float64)

    if spec.customer_windows:
        got = _customer_columns(store, customer_ids, terminal_ids, t_us, amount, origin, span)
        if got is None:
            return None
        columns |= got
    if spec.terminal_windows:
        got = _terminal_columns(store, terminal_ids, t_us, origin, span)
        if got is None:
            return None
        columns |= got
    names = spec.window_names
    out = np.empty((n, len(names)), dtype=np.float64)
    for k, name in enumerate(names):
        out[:, k] = columns[name]
    return out


def _customer_columns(
    store: MemoryFeatureStore,
    customer_ids: Sequence[str],
    terminal_ids: Sequence[str],
    t_us: np.ndarray,
    amount: np.ndarray,
    origin: int,
    span: int,
) -> dict[str, np.ndarray] | None:
    """The customer window, behavioural and known-fraud columns (see :func:`chunk_window_features`)."""
    spec = store.spec
    n = len(t_us)
    day = US_PER_DAY
    longest = spec.longest_window_days
    longest_us = longest * day
    codes, keys = _codes(customer_ids)
    if len(keys) * span >= _PACK_LIMIT:
        return None
    history = _History(store._customers, keys, int(t_us.min()) - longest_us, int(t_us.max()), origin, span)
    pairs = _Pairs(codes)
    if pairs.count and not len(pairs.later):
        return None
    per_key = np.bincount(history.code, minlength=len(keys)) + np.bincount(codes, minlength=len(keys))
    if per_key.max() >= MAX_WINDOW_EVENTS:
        return None
    exact = _exact_parts(np.concatenate((history.values, amount)))
    if exact is None:
        return None
    hi_parts, lo_parts, scale = exact
    h_hi, h_lo = hi_parts[: len(history.values)], lo_parts[: len(history.values)]
    c_hi, c_lo = hi_parts[len(history.values) :], lo_parts[len(history.values) :]
    prefix_hi = np.concatenate(([0], np.cumsum(h_hi)))
    prefix_lo = np.concatenate(([0], np.cumsum(h_lo)))
    later, earlier = pairs.later, pairs.earlier
    pair_t = t_us[earlier]
    pair_visible = pair_t <= t_us[later]
    upto_now = history.upto(codes, t_us)

    def window(lo: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Count and exact sum of the earlier events in (lo, t] (sum None: not needed)."""
        start = history.upto(codes, lo)
        count = upto_now - start
        inside = pair_visible & (pair_t > lo[later])
        count = count + np.bincount(later[inside], minlength=n)
        return count, start

    columns: dict[str, np.ndarray] = {}
    sums: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for w in spec.windows_days:
            lo = t_us - w * day
            count, start = window(lo)
            hi_sum = prefix_hi[upto_now] - prefix_hi[start]
            lo_sum = prefix_lo[upto_now] - prefix_lo[start]
            inside = pair_visible & (pair_t > lo[later])
            np.add.at(hi_sum, later[inside], c_hi[earlier[inside]])
            np.add.at(lo_sum, later[inside], c_lo[earlier[inside]])
            total = _to_float(hi_sum, lo_sum, scale)
            sums[w] = (count, total)
            own_n = count + 1
            columns[f"customer_id_nb_tx_{w}day_window"] = own_n.astype(np.float64)
            columns[f"customer_id_avg_amount_{w}day_window"] = (total + amount) / own_n
        if spec.feature_set == "baseline":
            return columns
        prev_n, prev_total = sums[longest]
        ratio = (amount + 1) / (prev_total / prev_n + 1)
        names = spec.behavioural_names
        columns[names[0]] = np.where(prev_n > 0, ratio, 1.0)

    # Hours since the previous transaction: the latest earlier event at or before t, capped at W days.
    previous = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    last = upto_now - 1
    mine = (last >= 0) & (history.code[np.maximum(last, 0)] == codes) if len(history.t) else np.zeros(n, bool)
    previous[mine] = history.t[last[mine]]
    np.maximum.at(previous, later[pair_visible], pair_t[pair_visible])
    gap = np.where(previous == np.iinfo(np.int64).min, longest_us, np.minimum(t_us - previous, longest_us))
    columns[names[1]] = gap.astype(np.float64) / US_PER_HOUR

    # First visit: no earlier transaction of the customer at this terminal in (t - W, t].
    terminal_codes = store._terminal_codes
    marks = np.fromiter((terminal_codes.get(k, -1) for k in terminal_ids), dtype=np.int64, count=n)
    visits = _pair_visits(history, codes, marks, t_us, t_us - longest_us, n)
    chunk_terminals, _ = _codes(terminal_ids)
    inside = pair_visible & (pair_t > t_us[later] - longest_us) & (chunk_terminals[earlier] == chunk_terminals[later])
    visits = visits + np.bincount(later[inside], minlength=n)
    columns[names[2]] = (visits == 0).astype(np.float64)

    in_hour, _ = window(t_us - US_PER_HOUR)
    columns[names[3]] = (in_hour + 1).astype(np.float64)

    if spec.feature_set == "labels":
        known = np.zeros(n, dtype=np.float64)
        candidates = store._customer_frauds
        for i in (i for i, c in enumerate(customer_ids) if c in candidates):
            t = int(t_us[i])
            known[i] = store._known_frauds(candidates[customer_ids[i]], t - longest_us, t - 1, t)
        columns[spec.label_aware_names[0]] = known
    return columns


def _pair_visits(
    history: _History, codes: np.ndarray, marks: np.ndarray, t_us: np.ndarray, lo: np.ndarray, n: int
) -> np.ndarray:
    """Per row, the store's events of its customer at its terminal (``marks``: the store's terminal code) in (lo, t]."""
    if not len(history.t):
        return np.zeros(n, dtype=np.int64)
    known = marks >= 0
    pair_key = codes * (int(max(marks.max(), history.marks.max())) + 2) + (marks + 1)
    event_key = history.code * (int(max(marks.max(), history.marks.max())) + 2) + (history.marks + 1)
    wanted = np.unique(pair_key[known])
    if not len(wanted):
        return np.zeros(n, dtype=np.int64)
    at = np.minimum(np.searchsorted(wanted, event_key), len(wanted) - 1)
    match = wanted[at] == event_key
    ids, times = at[match], history.t[match]
    order = np.argsort(ids, kind="stable")  # each pair's events stay in time order
    packed = ids[order] * history.span + (times[order] - history.origin)
    row_id = np.minimum(np.searchsorted(wanted, pair_key), len(wanted) - 1)
    row_id = np.where(known & (wanted[row_id] == pair_key), row_id, -1)
    hi = np.searchsorted(packed, row_id * history.span + (t_us - history.origin), side="right")
    low = np.searchsorted(packed, row_id * history.span + (lo - history.origin), side="right")
    return np.where(row_id >= 0, hi - low, 0)


def _terminal_columns(
    store: MemoryFeatureStore, terminal_ids: Sequence[str], t_us: np.ndarray, origin: int, span: int
) -> dict[str, np.ndarray] | None:
    """The terminal window and known-risk columns (see :func:`chunk_window_features`)."""
    spec = store.spec
    n = len(t_us)
    day = US_PER_DAY
    delay_us = spec.label_delay_days * day
    codes, keys = _codes(terminal_ids)
    if len(keys) * span >= _PACK_LIMIT:
        return None
    look_back = max(spec.history_days * day, KNOWN_RISK_DAYS * day)
    history = _History(store._terminals, keys, int(t_us.min()) - look_back, int(t_us.max()), origin, span, False)
    pairs = _Pairs(codes)
    if pairs.count and not len(pairs.later):
        return None
    later, earlier = pairs.later, pairs.earlier
    pair_t = t_us[earlier]
    frauds = store._frauds
    with_candidates = [i for i, k in enumerate(terminal_ids) if k in frauds]

    def count(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        inside = (pair_t > lo[later]) & (pair_t <= hi[later])
        return history.count(codes, lo, hi) + np.bincount(later[inside], minlength=n)

    def known(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=np.float64)
        for i in with_candidates:
            out[i] = store._known_frauds(frauds[terminal_ids[i]], int(lo[i]), int(hi[i]), int(t_us[i]))
        return out

    columns: dict[str, np.ndarray] = {}
    hi = t_us - delay_us
    with np.errstate(divide="ignore", invalid="ignore"):
        for w in spec.windows_days:
            lo = hi - w * day
            term_n = count(lo, hi)
            risk = known(lo, hi) / term_n
            columns[f"terminal_id_nb_tx_{w}day_window"] = term_n.astype(np.float64)
            columns[f"terminal_id_risk_{w}day_window"] = np.where(term_n > 0, risk, 0.0)
        if spec.feature_set == "labels":
            lo, hi = t_us - KNOWN_RISK_DAYS * day, t_us - 1
            recent_n = count(lo, hi)
            recent_risk = known(lo, hi) / recent_n
            columns[spec.label_aware_names[1]] = np.where(recent_n > 0, recent_risk, 0.0)
    return columns


def chunk_events(
    transaction_ids: Sequence[str],
    customer_ids: Sequence[str],
    terminal_ids: Sequence[str],
    t_us: np.ndarray,
    amount: np.ndarray,
    n: int,
) -> list[tuple[str, str, str, int, float, None, None]]:
    """The first ``n`` rows as unlabelled events."""
    return list(
        zip(
            transaction_ids[:n],
            customer_ids[:n],
            terminal_ids[:n],
            t_us[:n].tolist(),
            amount[:n].tolist(),
            [None] * n,
            [None] * n,
            strict=True,
        )
    )
