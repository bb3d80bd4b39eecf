"""A model of a dataset profile with its own layout: requests in that layout, scored as the offline pipeline scores.

In process (the scorer the service runs), on generated samples of the sparkov-extract and ULB layouts:
the request schema is the profile's columns; a file's rows sent as requests (one at a time or as a batch)
get exactly the booster's probabilities on the offline features; bad rows get a reason naming the column.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.profiles import Profile, load_profile
from data.sources import read_table, to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import train_model
from service.profiled import request_model
from service.scoring import Scorer
from tests.samples import sparkov_extract_rows, ulb_rows, write_sparkov_extract, write_ulb

HELD_OUT = 60


@dataclass
class Served:
    profile: Profile
    scorer: Scorer
    expected: np.ndarray  # the booster on the offline features of the held-out rows
    requests: list[dict[str, str]]  # the held-out rows as the file has them (label column dropped)


def _serve(name: str, path: Path) -> Served:
    profile = load_profile(name)
    raw = read_table(path)
    mapped = to_canonical_frame(raw, profile)
    spec = FeatureSpec.for_profile(profile, label_delay_days=1)
    features = compute_features(mapped, spec)
    days = features["tx_datetime"].dt.date()
    result = train_model(features, spec, TimeSplit.ending_at(days.max(), days.min(), 1, 3, 3))
    card = (
        result.model_card().registered_as("t", "run-t").model_copy(update={"profile": profile.model_dump(mode="json")})
    )
    held = features.tail(HELD_OUT)
    history = mapped.filter(~pl.col("transaction_id").is_in(held["transaction_id"].implode()))
    state = MemoryFeatureStore.from_transactions(history, spec).to_frame()
    expected = result.booster.inplace_predict(
        held.select(spec.feature_names).to_numpy(), iteration_range=(0, result.best_iteration + 1)
    )
    # The same rows as the file spells them, in the order the features put them (time, then id).
    keyed = raw.with_columns(mapped["transaction_id"].alias("_id"))
    order = pl.DataFrame({"_id": held["transaction_id"]}).with_row_index("_at")
    rows = keyed.join(order, on="_id").sort("_at").drop("_id", "_at", "_ragged_line", profile.label or "")
    requests = [{k: v for k, v in r.items() if k not in ("",)} for r in rows.to_dicts()]
    return Served(profile, Scorer(Bundle(result.booster, card, state)), expected, requests)


@pytest.fixture(scope="module", params=["sparkov-extract", "ulb-creditcard"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Served:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "sparkov-extract":
        path = write_sparkov_extract(tmp / "fraud_data.csv", sparkov_extract_rows(900))
    else:
        path = write_ulb(tmp / "creditcard.csv", ulb_rows(1500, days=30, index_column=True))
    return _serve(request.param, path)


def test_the_request_schema_is_the_profiles_columns(served: Served) -> None:
    schema = request_model(served.profile).model_json_schema()
    assert set(schema["properties"]) == set(served.profile.request_columns)
    assert served.profile.label not in schema["properties"]
    assert served.scorer.requests is not None
    if served.profile.name == "ulb-creditcard":
        assert {"Time", "V1", "V28", "Amount"} <= set(schema["properties"]) and "transaction_id" not in schema[
            "properties"
        ]
        assert schema["properties"]["V14"]["anyOf"][0]["type"] == "number"
    else:
        assert set(schema["required"]) >= {
            "trans_num",
            "trans_date_trans_time",
            "dob",
            "job",
            "lat",
            "long",
            "merchant",
        }


def test_file_rows_sent_as_requests_score_as_the_offline_pipeline(served: Served) -> None:
    batch = served.scorer.score_batch(served.requests)
    assert batch.errors == [] and len(batch.results) == HELD_OUT
    got = np.array([r["fraud_probability"] for r in batch.results])
    np.testing.assert_allclose(got, served.expected, rtol=0, atol=1e-6)
    # Sent again one at a time: the same answers (each already known, so scored as of its own arrival).
    again = [served.scorer.score_batch([r]).results[0]["fraud_probability"] for r in served.requests[:10]]
    np.testing.assert_allclose(again, got[:10], rtol=0, atol=1e-9)


def test_bad_rows_get_a_reason_naming_the_layouts_column(served: Served) -> None:
    good = dict(served.requests[0])
    amount, when = served.profile.amount, served.profile.event_time.column
    numeric = served.profile.numeric[0]
    bad = [
        {**good, amount: "a lot"},
        {**good, "bogus": 1},
        {k: v for k, v in good.items() if k != when},
        {**good, numeric: "n/a"},
        {**good, amount: -1},
        "not an object",
    ]
    if served.profile.event_time.format:
        bad.append({**good, when: "2019-01-21"})
    more = [
        ({**good, numeric: "inf"}, f"{numeric}:"),  # not finite: XGBoost would refuse the whole batch
        ({**good, when: 1e300}, f"{when}:")
        if served.profile.event_time.unit
        else ({**good, "merchant": "m" * 200}, "merchant:"),
    ]
    batch = served.scorer.score_batch([*bad, *(m for m, _ in more), good])
    reasons_more = {e["index"] - len(bad): e["reason"] for e in batch.errors if e["index"] >= len(bad)}
    assert [reasons_more[i].startswith(prefix) for i, (_, prefix) in enumerate(more)] == [True, True], reasons_more
    bad += [m for m, _ in more]
    batch = served.scorer.score_batch([*bad, good])
    assert batch.received == len(bad) + 1 and len(batch.results) + len(batch.errors) == batch.received
    reasons = {e["index"]: e["reason"] for e in batch.errors}
    assert sorted(reasons) == list(range(len(bad)))
    assert reasons[0].startswith(f"{amount}:") and "bogus" in reasons[1] and reasons[2].startswith(f"{when}:")
    assert reasons[3].startswith(f"{numeric}:") and reasons[4].startswith(f"{amount}:")
    assert "not a JSON object" in reasons[5]
    if served.profile.event_time.format:
        assert reasons[6] == f"{when}: cannot parse value '2019-01-21'"


def test_an_upload_in_the_layout_is_read_with_its_columns(served: Served, tmp_path: Path) -> None:
    from service.uploads import UploadError, read_upload

    path = tmp_path / "batch.csv"
    pl.DataFrame(served.requests[:5]).write_csv(path)
    upload = read_upload(path, 100, "batch.csv", *served.scorer.upload_columns)
    batch = served.scorer.score_frame(upload.frame, upload.unreadable)
    assert len(batch.results) == 5 and not batch.errors
    required = served.scorer.upload_columns[0]
    pl.DataFrame(served.requests[:5]).drop(required[0]).write_csv(path)
    with pytest.raises(UploadError, match=f"lacks column\\(s\\) {required[0]}"):
        read_upload(path, 100, "batch.csv", *served.scorer.upload_columns)


def test_the_service_log_keeps_the_layouts_columns_for_the_lake(served: Served, tmp_path: Path) -> None:
    """What the service scored in a profile's layout reaches the lake with its feature inputs (nothing lost)."""
    from data.drain import drain_service_log
    from data.feedback import FeedbackLog
    from data.lake import Lake
    from features.definitions import row_features
    from service.recording import RecordingScorer

    log = FeedbackLog(tmp_path / "service-log.sqlite")
    from config.settings import Settings

    # The session's monitor directory: BentoML keeps one monitor per name for the process, so another
    # directory here would take the other tests' prediction log with it.
    recording = RecordingScorer(served.scorer, "salt", Settings().monitor_path, log=log)
    sent = [r | ({"trans_num": f"logged-{i}"} if "trans_num" in r else {}) for i, r in enumerate(served.requests[:8])]
    batch = recording.score_batch(sent)
    assert not batch.errors
    lake = Lake(tmp_path / "home")
    counts = drain_service_log(lake, log.path)
    assert counts["scored_landed"] == 8
    landed = lake.read_transactions()
    spec = served.scorer.spec
    assert set(spec.row_inputs) <= set(landed.columns)
    # The row features the next training computes from the lake are those the service scored with.
    ids = batch.frame["transaction_id"].to_list()
    from_lake = row_features(landed.filter(pl.col("transaction_id").is_in(ids)).sort("transaction_id"), spec)
    from_requests = row_features(
        to_canonical_frame(pl.DataFrame(sent).cast(pl.String), served.profile).sort("transaction_id"), spec
    )
    assert from_lake.equals(from_requests)


def test_a_service_log_of_an_earlier_version_gains_the_attributes_column(tmp_path: Path) -> None:
    import sqlite3

    from data.feedback import FeedbackLog, read_scored

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE scored (transaction_id TEXT PRIMARY KEY, tx_datetime TEXT NOT NULL,"
            " customer_id TEXT NOT NULL, terminal_id TEXT NOT NULL, amount REAL NOT NULL, score REAL NOT NULL,"
            " decision TEXT NOT NULL,"
            " model_version TEXT NOT NULL, reasons TEXT NOT NULL, scored_at TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO scored VALUES ('old-1', '2026-01-01T00:00:00+00:00', 'c', 't', 1.0, 0.1, 'approve', '1', '[]',"
            " '2026-01-01T00:00:01+00:00')"
        )
    log = FeedbackLog(path)
    log.record_scored(
        ["new-1"],
        ["2026-01-02T00:00:00+00:00"],
        ["c"],
        ["t"],
        [2.0],
        [0.2],
        ["approve"],
        "2",
        ["[]"],
        ['{"attr_v1": "0.5"}'],
    )
    scored = read_scored(path)
    assert scored["transaction_id"].to_list() == ["old-1", "new-1"]
    assert scored["attr_v1"].to_list() == [None, "0.5"]
