"""An analyst works the alert queue in the real service's UI, in headless Chromium.

The service (its ASGI app, gateway and Gradio UI included) runs under uvicorn on a free loopback
port with an API key and a log file of its own. Some transactions are scored over HTTP with the
scorer's threshold set very low (so they alert); the analyst logs in with the key, opens the Alerts
tab, selects the top alert, marks it as fraud, and the verdict is then an ``analyst`` label event in
the service's log; drained into (a copy of) the lake, it is in the labels table and in the next
training set, with its source. Needs Debian's ``chromium`` and ``chromium-driver`` (as tests/service/test_ui.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from data.feedback import read_label_events
from tests.helpers import service_app

pytestmark = pytest.mark.slow

KEY = "alerts-ui-key"
DAY = "2026-05-10"  # inside the training window of the session's pipeline world (2026-04-01 .. 06-29)
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "the browser test needs Debian's chromium and chromium-driver: "
    "sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium chromium-driver"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alerts-ui") / "service-log.sqlite"


@pytest.fixture(scope="module")
def base_url(pipeline_result: dict[str, Any], log_path: Path) -> Iterator[str]:
    """The service on a free loopback port (uvicorn in a thread of this process), API key set."""
    import uvicorn

    mp = pytest.MonkeyPatch()
    mp.setenv("FRAUDOPS_FEEDBACK_DB", str(log_path))
    mp.setenv("FRAUDOPS_API_KEY", KEY)
    mp.delenv("FRAUDOPS_UI_DEMO", raising=False)
    try:
        with service_app(pipeline_result["package"]["model_tag"]) as app:
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while not server.started or httpx.get(f"{base}/readyz", timeout=5).status_code != 200:
                assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
            try:
                yield base
            finally:
                server.should_exit = True
                thread.join(timeout=30)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def top_alert(base_url: str) -> str:
    """Score a few cards' transactions so that they alert; the transaction id of the day's top alert."""
    import bentoml

    scorer = bentoml.get_current_service().scorer
    rows = [
        {
            "transaction_id": f"ui-al-{c}-{i}",
            "tx_datetime": f"{DAY}T{10 + i:02d}:{c:02d}:00Z",
            "customer_id": f"ui-al-card-{c}",
            "terminal_id": "ui-al-terminal",
            "amount": 50.0 + 200 * c + 30 * i,
        }
        for c in range(4)
        for i in range(2)
    ]
    headers = {"X-API-Key": KEY}
    before, scorer.threshold = scorer.threshold, 1e-9
    try:
        answer = httpx.post(f"{base_url}/score_batch", json={"transactions": rows}, headers=headers, timeout=60)
    finally:
        scorer.threshold = before
    assert answer.status_code == 200 and answer.json()["scored"] == len(rows), answer.text
    queue = httpx.get(f"{base_url}/alerts", params={"date": DAY}, headers=headers, timeout=60).json()
    assert queue["date"] == DAY and len(queue["alerts"]) == 4
    return str(queue["alerts"][0]["transaction_id"])


def test_an_analyst_marks_an_alert_as_fraud_in_the_alerts_tab(
    base_url: str, top_alert: str, log_path: Path, tmp_path: Path
) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
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

    def shown(xpath: str) -> Any:
        return lambda d: next((e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()), False)

    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{base_url}/ui/")
        # The UI asks for the API key first (the gateway's login form).
        key_box = WebDriverWait(driver, 30).until(shown("//input[@name='api_key']"))
        key_box.send_keys(KEY)
        driver.find_element(By.XPATH, "//button[@type='submit']").click()
        try:
            tab = WebDriverWait(driver, 60).until(shown("//*[@role='tab'][normalize-space()='Alerts']"))
        except Exception:
            driver.save_screenshot(str(tmp_path / "alerts-ui-failed.png"))
            raise
        tab.click()
        WebDriverWait(driver, 30).until(shown("//button[normalize-space()='Show alerts']")).click()
        # The table lists the day's alerts; the figures line shows the queue before any verdict.
        cell = WebDriverWait(driver, 60).until(shown(f"//span[normalize-space()='{top_alert}']"))
        WebDriverWait(driver, 30).until(
            lambda d: any("reviewed 0" in e.text and "backlog 4" in e.text for e in d.find_elements(By.TAG_NAME, "p"))
        )
        cell.click()
        WebDriverWait(driver, 30).until(shown("//h3[starts-with(normalize-space(), '#1 card ui-al-card-')]"))
        note = driver.find_element(By.XPATH, "//label[contains(., 'note')]//textarea")
        note.send_keys("confirmed with the cardholder")
        driver.find_element(By.XPATH, "//button[normalize-space()='Fraud']").click()
        WebDriverWait(driver, 60).until(shown(f"//*[contains(normalize-space(), 'Recorded: {top_alert} is fraud')]"))
        WebDriverWait(driver, 30).until(
            lambda d: any("reviewed 1" in e.text and "backlog 3" in e.text for e in d.find_elements(By.TAG_NAME, "p"))
        )
        driver.save_screenshot(str(tmp_path / "alerts-ui.png"))
    finally:
        driver.quit()

    events = read_label_events(log_path)
    analyst = events.filter(pl.col("source") == "analyst")
    assert analyst.select("transaction_id", "is_fraud", "note").rows() == [
        (top_alert, 1, "confirmed with the cardholder")
    ]


def test_the_verdict_reaches_the_labels_table_and_the_next_training_set(
    pipeline_result: dict[str, Any], top_alert: str, log_path: Path, tmp_path: Path
) -> None:
    """After the browser verdict: the ingest drain lands it, and training reads it as the alert's label."""
    import shutil

    from config.settings import Settings
    from data.drain import drain_service_log
    from data.labels import labels_as_of
    from data.lake import Lake
    from features.definitions import FeatureSpec, compute_features
    from flows.pipeline import LakeSnapshot, read_training_data, split_label_sources, training_split

    if read_label_events(log_path).filter(pl.col("source") == "analyst").height == 0:
        pytest.skip("no verdict recorded (the browser test did not run)")
    # A copy of the session's lake: the other end-to-end tests keep theirs unchanged.
    shutil.copytree(Settings().home_dir / "lake", tmp_path / "home" / "lake")
    lake = Lake(tmp_path / "home")
    drained = drain_service_log(lake, log_path)
    assert drained["labels_landed"] >= 1 and drained["scored_landed"] >= 8
    event = labels_as_of(lake.read_labels()).filter(pl.col("transaction_id") == top_alert)
    assert event.select("is_fraud", "source").rows() == [(1, "analyst")]

    spec = FeatureSpec()
    pinned = LakeSnapshot.now(lake)
    transactions, labels = read_training_data(lake, pinned, None, None)
    features = compute_features(transactions, spec, labels=labels)
    split = training_split(features, lake, pinned, spec, 7, 7)
    train = split.select(features, "train")
    assert train.filter(pl.col("transaction_id") == top_alert)["is_fraud"].to_list() == [1]
    assert split_label_sources(features, split, labels, pinned.as_of)["analyst"] == 1
