"""Dataset profiles: detection, mapping of each shipped layout, errors that say what to fix, inference."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from data.profiles import (
    ProfileError,
    detect_profile,
    infer_profile,
    load_profile,
    parse_profile,
    shipped_profile_names,
)
from data.sources import PARSE_ERRORS, RAGGED, SourceError, read_table, to_canonical_frame
from tests.samples import (
    SPARKOV_EXTRACT_COLUMNS,
    ULB_COLUMNS,
    ULB_ORIGIN,
    sparkov_extract_rows,
    ulb_rows,
    write_sparkov_extract,
    write_ulb,
)
from validation.raw import validate_raw


def test_the_shipped_profiles_are_the_documented_five_and_each_validates() -> None:
    assert shipped_profile_names() == ["canonical", "handbook", "sparkov", "sparkov-extract", "ulb-creditcard"]
    for name in shipped_profile_names():
        profile = load_profile(name)
        assert profile.name == name
        assert parse_profile(Path("profiles") / f"{name}.yaml") == profile
        # What `profile show` prints reads back as the same profile.
        out = Path(f"/tmp/profile-{name}.yaml")
        out.write_text(profile.to_yaml())
        assert parse_profile(out) == profile


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (SPARKOV_EXTRACT_COLUMNS, "sparkov-extract"),
        ([*SPARKOV_EXTRACT_COLUMNS, "cc_num"], "sparkov"),  # with a card number the full Sparkov layout wins
        (ULB_COLUMNS, "ulb-creditcard"),
        (["", *ULB_COLUMNS], "ulb-creditcard"),  # a copy with pandas' index column first
        (["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"], "handbook"),
        (["transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"], "canonical"),
    ],
)
def test_a_file_is_matched_to_its_profile_by_its_header(columns: list[str], expected: str) -> None:
    assert detect_profile(columns).name == expected


def test_a_header_no_profile_fits_names_the_closest_profile_and_its_missing_columns_only() -> None:
    columns = [c for c in SPARKOV_EXTRACT_COLUMNS if c != "dob"]
    with pytest.raises(ProfileError) as raised:
        detect_profile(columns)
    message = str(raised.value)
    assert "the closest is 'sparkov-extract', which needs ['dob']" in message
    assert "--profile FILE" in message and "profile infer" in message


def test_the_sparkov_extract_maps_with_its_quirks_and_rejects_the_malformed_labels(tmp_path: Path) -> None:
    rows = sparkov_extract_rows(40)
    rows[7]["is_fraud"] = '1"2020-12-24 16:56:24"'  # as the real file has it, twice
    rows[9]["is_fraud"] = '0"2019-01-03 12:00:01"'
    path = write_sparkov_extract(tmp_path / "fraud_data.csv", rows)
    assert '"""Stokes, Christiansen and Sipes"""' in path.read_text()  # doubled quotes, as in the extract
    raw = read_table(path)
    mapped = to_canonical_frame(raw)
    assert mapped.height == 40
    # DD-MM-YYYY HH:MM, read as UTC.
    first = datetime.strptime(rows[0]["trans_date_trans_time"], "%d-%m-%Y %H:%M").replace(tzinfo=UTC)
    assert mapped["tx_datetime"][0] == first
    # Names lose the quotes their export doubled; the card holder is a stable pseudonym of dob+job+lat+long.
    assert "Stokes, Christiansen and Sipes" in mapped["terminal_id"].to_list()
    holder = {(r["dob"], r["job"], r["lat"], r["long"]) for r in rows}
    assert mapped["customer_id"].n_unique() == len(holder)
    assert all(len(c) == 32 and c not in {r["dob"] for r in rows} for c in mapped["customer_id"])
    again = to_canonical_frame(read_table(write_sparkov_extract(tmp_path / "again.csv", rows)))
    assert again["customer_id"].to_list() == mapped["customer_id"].to_list()
    checked = validate_raw(mapped)
    assert checked.received == 40 and checked.accepted.height == 38
    reasons = checked.rejected["reason"].to_list()
    assert all("is_fraud: cannot parse value '1\"2020-12-24" in r or "'0\"2019-01-03" in r for r in reasons)
    assert not any(RAGGED in r or "_ragged" in r for r in reasons)  # no internal names in what users read
    # Features' inputs are kept as text attributes.
    assert {"attr_category", "attr_city_pop", "attr_dob", "attr_merch_lat", "attr_merch_long"} <= set(mapped.columns)


def test_a_holder_key_column_left_empty_is_a_reason_not_a_silent_merge(tmp_path: Path) -> None:
    rows = sparkov_extract_rows(10)
    rows[3]["dob"] = ""
    mapped = to_canonical_frame(read_table(write_sparkov_extract(tmp_path / "x.csv", rows)))
    assert mapped[PARSE_ERRORS][3] == "dob: missing (customer key)"
    assert mapped[PARSE_ERRORS].null_count() == 9


def test_ulb_times_count_from_the_origin_and_rows_get_content_ids(tmp_path: Path) -> None:
    rows = ulb_rows(50, index_column=True)
    rows.append(dict(rows[10]))  # an exact duplicate row (the real file has 1,081)
    rows[-1][""] = "50"  # ... written at another index: still the same transaction
    mapped = to_canonical_frame(read_table(write_ulb(tmp_path / "creditcard.csv", rows)))
    assert mapped.height == 51 and mapped[PARSE_ERRORS].is_null().all()
    assert mapped["tx_datetime"].to_list()[:3] == [ULB_ORIGIN + timedelta(seconds=float(r["Time"])) for r in rows[:3]]
    assert mapped["is_fraud"].to_list() == [int(r["Class"].strip('"')) for r in rows]
    assert mapped["transaction_id"][10] == mapped["transaction_id"][50]
    assert mapped["transaction_id"].n_unique() == 50
    # No customer or terminal: each transaction is its own (window features are off for this profile).
    assert (mapped["customer_id"] == mapped["transaction_id"]).all()
    assert "attr_" not in mapped.columns and "attr_v14" in mapped.columns


def test_ulb_rows_with_a_bad_number_are_rejected_naming_the_column(tmp_path: Path) -> None:
    rows = ulb_rows(5)
    rows[1]["V3"] = "n/a"
    rows[2]["Time"] = "yesterday"
    mapped = to_canonical_frame(read_table(write_ulb(tmp_path / "u.csv", rows)))
    assert mapped[PARSE_ERRORS].to_list()[:3] == [
        None,
        "V3: cannot parse value 'n/a'",
        "Time: cannot parse value 'yesterday'",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "transaction_id: Field required"),
        ("[1, 2]\n", "a profile is a mapping"),
        ("name: x\ntransaction_id: {column: id, derive: true}\n", "give either a column or derive: true"),
        (
            "name: x\ntransaction_id: {derive: true}\nevent_time: {column: t, unit: s}\namount: a\nnumeric: [v]\n",
            "unit and origin go together",
        ),
        ("name: x\ntransaction_id: {derive: true}\nevent_time: {column: t}\namount: a\n", "nothing to learn from"),
        ("name: x\nbogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_profile_file_says_which_field_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message.replace("[", r"\[")) as raised:
        load_profile(path)
    assert str(path) in str(raised.value)


def test_a_users_own_profile_file_maps_its_layout(tmp_path: Path) -> None:
    mine = tmp_path / "acquirer.yaml"
    mine.write_text(
        "name: acquirer\n"
        "transaction_id: {column: auth_id}\n"
        'event_time: {column: ts, format: "%d/%m/%Y %H:%M"}\n'
        "customer: {column: pan_token}\n"
        "terminal: {hash_of: [mcc, merchant_city]}\n"
        "amount: value_eur\n"
        "label: chargeback\n"
        "numeric: [risk_score]\n"
        "categorical: {channel: [ecom, pos]}\n"
    )
    raw = pl.DataFrame(
        {
            "auth_id": ["a1", "a2"],
            "ts": ["01/03/2024 10:05", "02/03/2024 23:59"],
            "pan_token": ["tok-1", "tok-2"],
            "mcc": ["5411", "5411"],
            "merchant_city": ["Lyon", "Lyon"],
            "value_eur": ["12.50", "99"],
            "chargeback": ["0", "1"],
            "risk_score": ["0.2", ""],
            "channel": ["ecom", "atm"],
        }
    )
    mapped = to_canonical_frame(raw, load_profile(mine))
    assert mapped["tx_datetime"].to_list() == [
        datetime(2024, 3, 1, 10, 5, tzinfo=UTC),
        datetime(2024, 3, 2, 23, 59, tzinfo=UTC),
    ]
    assert mapped["terminal_id"].n_unique() == 1 and mapped["customer_id"].to_list() == ["tok-1", "tok-2"]
    assert mapped[PARSE_ERRORS].is_null().all()
    with pytest.raises(SourceError, match=r"profile 'acquirer': missing columns \['risk_score'\]"):
        to_canonical_frame(raw.drop("risk_score"), load_profile(mine))


def test_infer_proposes_a_profile_that_maps_the_file(tmp_path: Path) -> None:
    sample = read_table(write_sparkov_extract(tmp_path / "x.csv", sparkov_extract_rows(200)))
    columns = {c: [str(v) for v in sample[c].to_list()] for c in sample.columns if c != RAGGED}
    proposed = infer_profile(columns, "my-extract")
    assert proposed.transaction_id.column == "trans_num" and proposed.amount == "amt"
    assert proposed.event_time.format == "%d-%m-%Y %H:%M" and proposed.label == "is_fraud"
    assert proposed.terminal is not None and proposed.terminal.column == "merchant"
    assert "category" in proposed.categorical and "city_pop" in proposed.numeric
    assert to_canonical_frame(sample, proposed)[PARSE_ERRORS].is_null().all()
    ulb = read_table(write_ulb(tmp_path / "u.csv", ulb_rows(100)))
    guessed = infer_profile({c: [str(v) for v in ulb[c].to_list()] for c in ulb.columns if c != RAGGED}, "u")
    assert guessed.transaction_id.derive and guessed.event_time.unit == "s" and guessed.label == "Class"
    assert guessed.customer is None and guessed.terminal is None and len(guessed.numeric) == 28


def test_numbers_that_are_not_finite_or_out_of_range_are_reasons_not_crashes() -> None:
    profile = load_profile("ulb-creditcard")
    columns = {"Time": ["1e300", "inf", "nan", "-5", "10"], "Amount": ["1", "inf", "2", "3", "4"], "Class": ["0"] * 5}
    columns |= {f"V{i}": ["0"] * 5 for i in range(1, 29)} | {"V3": ["0", "0", "0", "1e999", "0"]}
    mapped = to_canonical_frame(pl.DataFrame(columns), profile)
    assert mapped[PARSE_ERRORS].to_list() == [
        "Time: cannot parse value '1e300'",
        "Time: cannot parse value 'inf'; Amount: cannot parse value 'inf'",
        "Time: cannot parse value 'nan'",
        "V3: cannot parse value '1e999'",
        None,
    ]
    assert validate_raw(mapped).accepted.height == 1


def test_a_holder_key_is_the_same_with_or_without_the_quotes_the_export_doubled(tmp_path: Path) -> None:
    rows = sparkov_extract_rows(10)
    unquoted = [dict(r) | {"job": r["job"].strip('"')} for r in rows]
    quoted = to_canonical_frame(read_table(write_sparkov_extract(tmp_path / "a.csv", rows)))
    plain = to_canonical_frame(read_table(write_sparkov_extract(tmp_path / "b.csv", unquoted)))
    assert rows[0]["job"].startswith('"') and quoted["customer_id"].to_list() == plain["customer_id"].to_list()


def test_which_profiles_share_a_lake_and_which_are_served_in_their_own_layout(tmp_path: Path) -> None:
    from data.profiles import has_own_layout, profile_from_dict

    shipped = {n: load_profile(n) for n in shipped_profile_names()}
    assert shipped["canonical"].feature_compatible(shipped["handbook"])
    assert not shipped["sparkov"].feature_compatible(shipped["sparkov-extract"])  # dob formats, holder keys
    assert {n for n, p in shipped.items() if has_own_layout(p)} == {"sparkov", "sparkov-extract", "ulb-creditcard"}
    # A user's profile whose keys are hashes or whose ids are derived cannot take the canonical request.
    hashed = profile_from_dict(
        {
            "name": "acq",
            "transaction_id": {"derive": True},
            "event_time": {"column": "ts"},
            "customer": {"column": "card"},
            "terminal": {"hash_of": ["mcc", "city"]},
            "amount": "value",
        }
    )
    assert has_own_layout(hashed)


def test_the_lake_refuses_another_profiles_data_before_anything_is_written(tmp_path: Path) -> None:
    from data.lake import Lake

    lake = Lake(tmp_path / "home")
    lake.check_profile(load_profile("ulb-creditcard"))  # an empty lake takes any profile
    assert lake.profile() is None
    lake.record_profile(load_profile("sparkov-extract"))
    with pytest.raises(ValueError, match="this lake holds 'sparkov-extract' data; 'sparkov' rows have other"):
        lake.check_profile(load_profile("sparkov"))
    assert lake.profile() == load_profile("sparkov-extract")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("numeric: [amt]\n", r"\['amt'\] already have a role"),
        ("numeric: [TX_AMOUNT]\n", "would have the name of a window feature"),
    ],
)
def test_a_profile_cannot_make_a_role_or_a_window_name_an_extra_feature(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: x\ntransaction_id: {derive: true}\nevent_time: {column: t}\namount: amt\ncustomer: {column: c}\n" + extra
    )
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_infer_never_proposes_the_label_the_scenario_or_another_time_as_a_feature() -> None:
    columns = {
        "TRANSACTION_ID": ["1", "2"],
        "TX_DATETIME": ["2018-04-01 00:00:31", "2018-04-01 00:02:10"],
        "CUSTOMER_ID": ["5", "6"],
        "TERMINAL_ID": ["7", "8"],
        "TX_AMOUNT": ["1.0", "2.0"],
        "TX_TIME_SECONDS": ["31", "130"],
        "TX_TIME_DAYS": ["0", "0"],
        "TX_FRAUD": ["0", "1"],
        "TX_FRAUD_SCENARIO": ["0", "2"],
    }
    proposed = infer_profile(columns, "hb")
    assert proposed.numeric == () and proposed.label == "TX_FRAUD"
    epoch = infer_profile({"unix_time": ["1546300800", "1546300900"], "amount": ["1", "2"], "card": ["a", "b"]}, "unix")
    assert epoch.event_time.origin is not None and epoch.event_time.origin.year == 1970
