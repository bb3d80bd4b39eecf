"""The Gradio UI on a real server: gradio_client drives its API, headless Chromium checks it renders.

The Blocks from ``build_ui`` are launched on a free loopback port with a real ``Scorer`` over a real
bundle (a small model trained on the session's simulated transactions, written and read back with
``model.bundle``). The Chromium test needs Debian's ``chromium`` and ``chromium-driver``.
"""

import io
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import polars as pl
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from config.settings import Settings
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from model.anchors import ANCHORS, PERFECT_CP_AT_100_PROTOCOL_A, anchors_for
from model.bundle import Bundle, read_bundle, write_bundle
from model.card import ModelCard
from model.splits import TimeSplit
from model.training import train_model
from service.recording import RecordingScorer
from service.scoring import Scorer
from service.ui import BATCH_COLUMNS, build_ui

VERSION = "7"
MONITOR_DIR = Settings().monitor_path  # under the session's BENTOML_HOME (conftest)
TABS = ("Score a transaction", "Batch", "Model card")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "the screenshot test needs Debian's chromium and chromium-driver: "
    "sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium chromium-driver "
    "(.ci/run installs them when /usr/bin/chromedriver is missing)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bundle(small_transactions: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A real bundle: a small XGBoost model, its card and online state, written to disk and read back."""
    spec = FeatureSpec()
    features = compute_features(small_transactions, spec)
    days = features["tx_datetime"].dt.date()
    result = train_model(features, spec, TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days))
    state = MemoryFeatureStore.from_transactions(small_transactions, spec).to_frame()
    directory = tmp_path_factory.mktemp("ui-bundle")
    write_bundle(directory, result.booster, result.model_card().registered_as(VERSION, "run-ui"), state)
    return read_bundle(directory)


@pytest.fixture(scope="module")
def scorers(bundle: Bundle) -> dict[str, RecordingScorer]:
    """The scorer the UI calls (``current``); a test may swap it, the fixture restores it."""
    return {
        "current": RecordingScorer(Scorer(bundle), "test-salt", MONITOR_DIR),
        "default": RecordingScorer(Scorer(bundle), "test-salt", MONITOR_DIR),
    }


@pytest.fixture(scope="module")
def ui_url(scorers: dict[str, RecordingScorer]) -> Iterator[str]:
    """The UI launched on a free loopback port, as the service builds it."""
    demo = build_ui(lambda: scorers["current"])
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(ui_url: str) -> Client:
    return Client(ui_url, verbose=False)


@pytest.fixture
def use_default_scorer(scorers: dict[str, RecordingScorer]) -> Iterator[None]:
    yield
    scorers["current"] = scorers["default"]


def known_ids(transactions: pl.DataFrame) -> tuple[str, str]:
    """A customer and a terminal with history in the online state."""
    last = transactions.sort("tx_datetime").tail(1)
    return str(last["customer_id"][0]), str(last["terminal_id"][0])


def batch_frame(transactions: pl.DataFrame, prefix: str, n: int = 5) -> pl.DataFrame:
    """``n`` new transactions after the simulated history, on known customers and terminals."""
    last = transactions.sort("tx_datetime").tail(n)
    return pl.DataFrame(
        {
            "transaction_id": [f"{prefix}-{i}" for i in range(n)],
            "tx_datetime": [f"2026-03-05T{10 + i:02d}:00:00Z" for i in range(n)],
            "customer_id": last["customer_id"].to_list(),
            "terminal_id": last["terminal_id"].to_list(),
            "amount": [str(20.0 + 40 * i) for i in range(n)],
        }
    )


def table(value: dict[str, Any]) -> list[dict[str, Any]]:
    """A Dataframe output as received by gradio_client: rows as dicts."""
    return [dict(zip(value["headers"], row, strict=True)) for row in value["data"]]


# --- gradio_client against the running server ------------------------------------------------------


def test_single_transaction_returns_decision_reasons_and_json(client: Client, small_transactions: pl.DataFrame) -> None:
    customer, terminal = known_ids(small_transactions)
    summary, chart, payload = client.predict(
        "ui-one", "2026-03-05T09:00:00Z", customer, terminal, 480.0, api_name="/score_one"
    )
    assert payload["transaction_id"] == "ui-one" and payload["decision"] in {"alert", "approve"}
    assert payload["model_version"] == VERSION
    verdict = "ALERT" if payload["decision"] == "alert" else "approve"
    assert summary.startswith(f"### {verdict}: fraud probability {payload['fraud_probability']:.3f}")
    assert f"threshold {payload['threshold']:.3f}, model v{VERSION}" in summary
    assert all(f"`{r['feature']} = " in summary for r in payload["reasons"])
    assert len(payload["reasons"]) == 3
    bars = {row[0]: row for row in chart["data"]}  # feature, value, contribution, direction
    assert set(bars) == {r["feature"] for r in payload["reasons"]}
    for reason in payload["reasons"]:
        _, value, contribution, direction = bars[reason["feature"]]
        assert contribution == pytest.approx(reason["contribution"]) and value == pytest.approx(reason["value"])
        assert direction == ("towards fraud" if contribution >= 0 else "away from fraud")


def test_ui_scoring_is_recorded_like_the_api(client: Client, small_transactions: pl.DataFrame) -> None:
    """The UI scores through the API's score-and-record path: prediction log (customer hashed) and conflicts."""
    from data.privacy import hash_id
    from service.recording import MONITOR_NAME

    _, terminal = known_ids(small_transactions)
    client.predict("ui-logged", "2026-03-05T09:30:00Z", "ui-secret-customer", terminal, 12.0, api_name="/score_one")
    text = "".join(p.read_text() for p in (MONITOR_DIR / MONITOR_NAME / "data").glob("data.*.log"))
    assert '"ui-logged"' in text and hash_id("ui-secret-customer", "test-salt") in text
    assert "ui-secret-customer" not in text
    with pytest.raises(AppError, match="already scored with another amount"):
        client.predict("ui-logged", "2026-03-05T09:30:00Z", "ui-secret-customer", terminal, 13.0, api_name="/score_one")


@pytest.mark.parametrize(
    ("change", "field"),
    [({"amount": -5.0}, "amount"), ({"when": "yesterday"}, "tx_datetime"), ({"customer": ""}, "customer_id")],
)
def test_single_transaction_errors_name_the_field(client: Client, change: dict[str, Any], field: str) -> None:
    args = {"tid": "ui-bad", "when": "2026-03-05T09:00:00Z", "customer": "1", "terminal": "2", "amount": 10.0}
    with pytest.raises(AppError, match=field):
        client.predict(*{**args, **change}.values(), api_name="/score_one")


def test_batch_csv_with_a_bad_row_balances_and_reports_it(
    client: Client, small_transactions: pl.DataFrame, tmp_path: Path
) -> None:
    frame = batch_frame(small_transactions, "csv").with_columns(
        amount=pl.when(pl.col("transaction_id") == "csv-2").then(pl.lit("-3")).otherwise(pl.col("amount"))
    )
    path = tmp_path / "batch.csv"
    frame.write_csv(path)
    counts, results, rejected, download = client.predict(handle_file(str(path)), api_name="/score_file")
    assert "received 5** = scored 4 + rejected 1" in counts
    scored = table(results)
    assert [r["transaction_id"] for r in scored] == ["csv-0", "csv-1", "csv-3", "csv-4"]
    assert all(0 <= r["probability"] <= 1 and r["decision"] in {"alert", "approve"} for r in scored)
    assert all(r["top_reason"] for r in scored)
    (bad,) = table(rejected)
    assert bad["index"] == 2 and bad["transaction_id"] == "csv-2" and "amount" in bad["reason"]

    downloaded = pl.read_csv(download, infer_schema_length=None)
    assert downloaded["index"].to_list() == [0, 1, 2, 3, 4]
    ok = downloaded.filter(pl.col("decision") != "rejected")
    assert ok["transaction_id"].to_list() == [r["transaction_id"] for r in scored]
    assert ok["fraud_probability"].to_list() == pytest.approx([r["probability"] for r in scored], abs=1e-4)
    assert set(ok["model_version"].cast(pl.String)) == {VERSION}
    assert downloaded.filter(pl.col("decision") == "rejected")["error"].str.contains("amount").to_list() == [True]


def test_batch_parquet_with_typed_columns_is_scored(
    client: Client, small_transactions: pl.DataFrame, tmp_path: Path
) -> None:
    frame = batch_frame(small_transactions, "pq", n=3).with_columns(
        pl.col("tx_datetime").str.to_datetime(time_zone="UTC"),
        pl.col("customer_id").cast(pl.Int64),
        pl.col("amount").cast(pl.Float64),
        is_fraud=pl.lit(0, pl.Int8),
    )
    path = tmp_path / "batch.parquet"
    frame.write_parquet(path)
    counts, results, rejected, download = client.predict(handle_file(str(path)), api_name="/score_file")
    assert "received 3** = scored 3 + rejected 0" in counts and "ignored column(s): is_fraud" in counts
    assert [r["transaction_id"] for r in table(results)] == ["pq-0", "pq-1", "pq-2"]
    assert table(rejected) == []
    assert pl.read_csv(download)["transaction_id"].to_list() == ["pq-0", "pq-1", "pq-2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01garbage\xff\xfe\n\x00", "cannot read"),
        (b"PAR1 not really parquet", "cannot read"),
        (b"transaction_id,when,customer_id,terminal_id,amount\nx,2026-03-01,1,2,3\n", "lacks column(s) tx_datetime"),
        (",".join(BATCH_COLUMNS).encode() + b"\n", "no rows"),
    ],
)
def test_bad_batch_files_get_a_clear_error(client: Client, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(AppError, match=re.escape(message)):
        client.predict(handle_file(str(path)), api_name="/score_file")


def test_model_card_shows_version_window_metrics_anchors_curve_and_features(client: Client, bundle: Bundle) -> None:
    text, comparison, curve, features, card = client.predict(api_name="/model_card")
    split = bundle.card.split.to_dict()
    assert f"Model v{VERSION}" in text
    assert f"{split['train_start']} .. {split['train_end']}" in text and f"{split['test_start']} .. " in text
    assert f"{bundle.threshold:.4f}" in text and "cost: minimises" in text
    rows = table(comparison)
    ours = rows[0]
    assert ours["source"] == "this model" and ours["model"] == f"XGBoost v{VERSION}"
    assert ours["AUC ROC"] == f"{bundle.card.metrics['test_auc']:.3f}"
    published = [r for r in rows if r["source"] == "published"]
    assert len(published) == len(ANCHORS) + 1
    xgb_a = next(r for r in published if r["protocol / window"] == "A" and r["model"] == "XGBoost")
    assert (xgb_a["AUC ROC"], xgb_a["AP"], xgb_a["CP@100"]) == ("0.862", "0.639", "0.273")
    assert published[-1]["CP@100"] == f"{PERFECT_CP_AT_100_PROTOCOL_A:.3f}"
    points = curve["data"]
    assert len(points) == len(bundle.card.pr_curve.recall) > 10
    assert all(0 <= p[0] <= 1 and 0 <= p[1] <= 1 for p in points)
    assert [r["feature"] for r in table(features)] == bundle.spec.feature_names
    assert card["model_version"] == VERSION and "online_state_transactions" in card


def test_model_card_without_pr_curve_still_renders(
    client: Client, bundle: Bundle, scorers: dict[str, RecordingScorer], use_default_scorer: None
) -> None:
    written = bundle.card.to_dict()
    old_card = ModelCard.model_validate(
        {k: v for k, v in written.items() if k not in {"pr_curve", "threshold_policy", "baseline_metrics"}}
    )
    scorers["current"] = RecordingScorer(
        Scorer(Bundle(bundle.booster, old_card, bundle.state)), "test-salt", MONITOR_DIR
    )
    text, comparison, curve, _, _ = client.predict(api_name="/model_card")
    assert f"Model v{VERSION}" in text and "no precision-recall curve" in text
    assert "not recorded" in text
    assert curve is None or curve["data"] == []
    assert table(comparison)[1]["AUC ROC"] == "n/a"


def test_anchors_are_the_published_figures() -> None:
    assert [(a.model, a.auc, a.ap, a.cp_at_100) for a in anchors_for("B")] == [
        ("logistic regression", 0.868, 0.623, 0.297),
        ("random forest", 0.870, 0.678, 0.299),
        ("XGBoost", 0.869, 0.687, 0.303),
    ]
    assert len(anchors_for("A")) == 4 and anchors_for("A")[0].ap == 0.606
    with pytest.raises(ValueError, match="A and B"):
        anchors_for("C")


# --- headless Chromium ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_page_renders_the_three_tabs_in_headless_chromium(
    ui_url: str, small_transactions: pl.DataFrame, tmp_path: Path
) -> None:
    """Load the page in Chromium, wait for the tab labels, score once, save a screenshot.

    ``FRAUDOPS_UI_SCREENSHOT=docs/ui.png`` also copies the screenshot there (how docs/ui.png is made).
    """
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1500",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(ui_url)

        def visible_tabs(d: Any) -> set[str]:
            return {t.text.strip() for t in d.find_elements(By.CSS_SELECTOR, "[role='tab']") if t.is_displayed()}

        try:
            WebDriverWait(driver, 60).until(lambda d: set(TABS) <= visible_tabs(d))
        except Exception:
            driver.save_screenshot(str(tmp_path / "ui-failed.png"))
            pytest.fail(f"the page did not render the tabs {TABS}; visible tabs: {sorted(visible_tabs(driver))}")

        # Score the form's transaction so the screenshot shows a decision and the reasons chart.
        customer, terminal = known_ids(small_transactions)
        for label, value in (
            ("tx_datetime", "2026-03-05T11:30:00Z"),
            ("customer_id", customer),
            ("terminal_id", terminal),
            ("amount", "480"),
        ):
            box = driver.find_element(
                By.XPATH, f"//label[contains(., '{label}')]//textarea | //label[contains(., '{label}')]//input"
            )
            box.clear()
            box.send_keys(value)
        driver.find_element(By.XPATH, "//button[normalize-space()='Score']").click()
        WebDriverWait(driver, 60).until(
            lambda d: any(f"model v{VERSION}" in h.text for h in d.find_elements(By.TAG_NAME, "h3"))
        )
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks"))
        shot = tmp_path / "ui.png"
        assert driver.save_screenshot(str(shot)), "Chromium could not save the screenshot"
        assert set(TABS) <= visible_tabs(driver)

        # The other two tabs open and show their content.
        driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space()='Batch']").click()
        WebDriverWait(driver, 30).until(
            lambda d: any(
                b.is_displayed() for b in d.find_elements(By.XPATH, "//button[normalize-space()='Score file']")
            )
        )
        driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space()='Model card']").click()
        WebDriverWait(driver, 30).until(
            lambda d: any(
                f"Model v{VERSION}" in h.text and h.is_displayed() for h in d.find_elements(By.TAG_NAME, "h3")
            )
        )
        driver.save_screenshot(str(tmp_path / "ui-model-card.png"))
    finally:
        driver.quit()

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.width >= 1000 and image.height >= 800
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    if target := os.environ.get("FRAUDOPS_UI_SCREENSHOT"):
        shutil.copyfile(shot, target)


def test_build_ui_returns_blocks_with_the_three_tabs() -> None:
    def no_scorer() -> Scorer:
        raise gr.Error("the model is still loading")

    demo = build_ui(no_scorer)
    labels = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert labels == list(TABS)


def test_read_only_demo_scoring_writes_nothing(
    client: Client, bundle: Bundle, scorers: dict[str, RecordingScorer], use_default_scorer: None
) -> None:
    """The demo mode's scorer (FRAUDOPS_UI_DEMO): answers, but adds nothing to the state and logs nothing."""
    from service.recording import MONITOR_NAME

    demo = RecordingScorer(Scorer(bundle), "test-salt", MONITOR_DIR, read_only=True)
    scorers["current"] = demo
    before = demo.scorer.state_size()
    _, _, payload = client.predict("ui-demo-1", "2026-03-05T11:00:00Z", "demo-c", "demo-t", 30.0, api_name="/score_one")
    assert payload["transaction_id"] == "ui-demo-1" and 0 <= payload["fraud_probability"] <= 1
    assert demo.scorer.state_size() == before and not demo.scorer.state.knows("ui-demo-1")
    logs = "".join(p.read_text() for p in (MONITOR_DIR / MONITOR_NAME / "data").glob("data.*.log"))
    assert "ui-demo-1" not in logs


def test_served_examples_reach_the_form_only_past_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's config holds no served data; the prefill and example buttons refuse the read-only demo UI."""
    import json
    from functools import partial

    from data.contract import TransactionIn
    from service.ui import ScoreForm

    recent = {"transaction_id": "x", "tx_datetime": "2026-03-01T00:00:00+00:00", "customer_id": "card-SECRET-1"}
    examples = {
        "recent": recent | {"terminal_id": "t-1", "amount": 12.0},
        "fraud": recent
        | {"transaction_id": "example-fraud", "customer_id": "card-SECRET-2", "terminal_id": "t", "amount": 900.0},
    }
    form = ScoreForm.of(TransactionIn, frozenset({"amount"}), examples)
    blocks = build_ui(lambda: None, None, form)  # type: ignore[arg-type,return-value]
    assert "SECRET" not in json.dumps(blocks.get_config_file(), default=str)
    fns = {f.fn.args[0] if isinstance(f.fn, partial) else f.name: f.fn for f in blocks.fns.values()}
    monkeypatch.delenv("FRAUDOPS_UI_DEMO", raising=False)
    assert fns["fill_on_load"]() == ["ui-0001", recent["tx_datetime"], "card-SECRET-1", "t-1", 12.0]
    assert fns["fraud"]()[2] == "card-SECRET-2"
    monkeypatch.setenv("FRAUDOPS_UI_DEMO", "1")
    assert "card-SECRET-1" not in fns["fill_on_load"]()
    with pytest.raises(gr.Error, match="need the API key"):
        fns["fraud"]()
