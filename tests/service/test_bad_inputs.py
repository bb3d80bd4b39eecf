"""A catalogue of bad inputs for every service endpoint and CLI entry.

Service (the in-process ASGI app with the pipeline's model, as in tests/service/test_service.py): each bad
request gets a 4xx whose message names the problem; in a batch, each bad row comes back in
``errors`` by index with a reason while the others are scored; after the whole catalogue the service
is still ready and still scores. CLI: each bad argument exits non-zero with a message naming it and
no Python traceback.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.helpers import service_app

pytestmark = pytest.mark.slow

VALID = {
    "transaction_id": "bad-inputs-ok",
    "tx_datetime": "2026-06-14T12:00:00Z",
    "customer_id": "12",
    "terminal_id": "40",
    "amount": 250.5,
}
FIELDS = tuple(VALID)
HEADER = ",".join(FIELDS)
JSON = {"content-type": "application/json"}
MULTIPART = "multipart/form-data; boundary=b0undary"
TOMORROW = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
TINY_LIMIT = {"FRAUDOPS_MAX_BODY_MB": "0.001"}  # about 1 kB
API_KEY = {"FRAUDOPS_API_KEY": "s3cret"}
BAD_LENGTH = {**JSON, "content-length": "abc"}
BIG = "x" * 2_000
FILE_ROW_LIMIT = 200_000  # service.service.MAX_FILE_ROWS


def tx(tid: str, **change: Any) -> dict[str, Any]:
    """A valid transaction with id ``tid`` and ``change`` applied."""
    return {**VALID, "transaction_id": tid, **change}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in tx(f"missing-{field}").items() if k != field}


def raw_amount(tid: str, token: str) -> dict[str, Any]:
    """Request arguments: a transaction as JSON text whose amount is ``token`` verbatim (``NaN``, ``1e400``)."""
    return {"content": json.dumps(tx(tid, amount="@")).replace('"@"', token).encode(), "headers": JSON}


def raw(body: bytes, media: str = "application/json") -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": media}}


def csv(*lines: str) -> bytes:
    return ("\n".join([HEADER, *lines]) + "\n").encode()


def upload(name: str, content: bytes, media: str = "text/csv") -> dict[str, Any]:
    return {"files": {"file": (name, content, media)}}


def labels(*items: dict[str, Any]) -> dict[str, Any]:
    """Request arguments for /feedback."""
    return {"json": {"labels": list(items)}}


def lab(tid: str = "fb-x", is_fraud: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "is_fraud": is_fraud, **extra}


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


GOOD_PARQUET = parquet(pl.DataFrame({k: [v] for k, v in VALID.items()}))
FLOAT_IDS_PARQUET = parquet(pl.DataFrame({**{k: [v] for k, v in VALID.items()}, "customer_id": [12.5]}))
HUNDRED_ROWS = csv(*(f"r{i},2026-06-14T12:00:00Z,1,2,3" for i in range(100)))
TOO_MANY_ROWS = csv(*["r,2026-06-14,1,2,3"] * (FILE_ROW_LIMIT + 1))
REPEATED_COLUMN = csv("r1,2026-06-14T12:00:00Z,12,40,3,4").replace(b"amount", b"amount,amount")
TWO_COLUMNS = b"transaction_id,amount\n1,2\n"


def _chunks() -> Iterator[bytes]:
    yield json.dumps(tx("chunked")).encode()


@pytest.fixture(scope="module")
def client(pipeline_result: dict[str, Any]) -> Iterator[TestClient]:
    with (
        service_app(pipeline_result["package"]["model_tag"]) as app,
        TestClient(app, raise_server_exceptions=False) as test_client,
    ):
        yield test_client


# --- one request, one 4xx naming the problem ---------------------------------------------------------


def at(path: str, method: str = "POST") -> Callable[..., Any]:
    """Case builder for ``path``: ``(case_id, status, names, env=, verb=, **request)``.

    ``request`` (httpx keyword arguments) must get ``status`` with every one of ``names`` in the body;
    ``env`` is set for the request.
    """

    def case(
        case_id: str,
        status: int,
        names: tuple[str, ...],
        *,
        env: dict[str, str] | None = None,
        verb: str = method,
        **request: Any,
    ) -> Any:
        endpoint = path.strip("/").split("/")[0]
        return pytest.param(verb, path, request, status, names, env or {}, id=f"{endpoint}-{case_id}")

    return case


score, batch, scorefile, job, feedback, model = (
    at("/score"),
    at("/score_batch"),
    at("/score_file"),
    at("/score_job/submit"),
    at("/feedback"),
    at("/model"),
)
NOT_FINITE = ("amount", "finite")
OVER_MAX = ("amount", "less than or equal to 1000000")
UNDER_ZERO = ("amount", "greater than or equal to 0")

CATALOGUE = [
    # POST /score: body, content type, fields, types, values, transport limits
    score("malformed-json", 400, ("Invalid JSON",), **raw(b'{"transaction_id": "x",')),
    score("not-json", 400, ("Invalid JSON",), **raw(b"hello")),
    score("xml-content-type", 400, ("Invalid JSON",), **raw(b"<tx/>", "application/xml")),
    score("multipart-content-type", 400, ("transaction_id", "Field required"), **upload("t.json", b"{}")),
    score("json-array", 400, ("Input should be an object",), json=[VALID]),
    score("malformed-multipart", 400, ("multipart",), **raw(b"--b0undary\r\ngarbage", MULTIPART)),
    score("empty-body", 400, (*FIELDS, "Field required"), **raw(b"")),
    *(score(f"missing-{f}", 400, (f, "Field required"), json=without(f)) for f in FIELDS),
    score("extra-field", 400, ("mcc", "Extra inputs are not permitted"), json=tx("extra", mcc="5411")),
    score("amount-text", 400, ("amount", "valid number"), json=tx("a-text", amount="lots")),
    score("amount-list", 400, ("amount", "valid number"), json=tx("a-list", amount=[1])),
    score("amount-null", 400, ("amount", "valid number"), json=tx("a-null", amount=None)),
    score("amount-boolean", 400, ("amount",), json=tx("a-bool", amount=True)),
    score("amount-negative", 400, UNDER_ZERO, json=tx("a-neg", amount=-5)),
    score("amount-absurd", 400, OVER_MAX, json=tx("a-absurd", amount=1e7)),
    score("amount-NaN", 400, ("amount",), **raw_amount("a-nan", "NaN")),
    score("amount-NaN-said-not-finite", 400, NOT_FINITE, **raw_amount("a-nan-2", "NaN")),
    score("amount-Infinity", 400, NOT_FINITE, **raw_amount("a-inf", "Infinity")),
    score("amount-minus-Infinity", 400, NOT_FINITE, **raw_amount("a-ninf", "-Infinity")),
    score("amount-1e400", 400, NOT_FINITE, **raw_amount("a-1e400", "1e400")),
    score("customer-id-number", 400, ("customer_id", "valid string"), json=tx("c-num", customer_id=12)),
    score("customer-id-null", 400, ("customer_id", "valid string"), json=tx("c-null", customer_id=None)),
    score("transaction-id-empty", 400, ("transaction_id", "at least 1 character"), json=tx("")),
    score("transaction-id-blank", 400, ("transaction_id", "at least 1 character"), json=tx("   ")),
    score("terminal-id-129-chars", 400, ("terminal_id", "at most 128"), json=tx("t-long", terminal_id="t" * 129)),
    score("datetime-garbage", 400, ("tx_datetime", "valid datetime"), json=tx("d-x", tx_datetime="not a date")),
    score("datetime-feb-30", 400, ("tx_datetime", "valid datetime"), json=tx("d-30", tx_datetime="2026-02-30T12:00")),
    score("datetime-empty", 400, ("tx_datetime",), json=tx("d-empty", tx_datetime="")),
    score("datetime-year-2999", 400, ("tx_datetime", "in the future"), json=tx("d-2999", tx_datetime="2999-01-01")),
    score("datetime-in-2-days", 400, ("tx_datetime", "in the future"), json=tx("d-soon", tx_datetime=TOMORROW)),
    score("get-instead-of-post", 405, ("Method Not Allowed",), verb="GET"),
    score("content-length-abc", 400, ("Content-Length 'abc' is not a number",), content=b"{}", headers=BAD_LENGTH),
    score("chunked-without-length", 411, ("Content-Length required",), content=_chunks(), headers=JSON),
    score("oversized-body", 413, ("exceeds the limit",), json=tx("big", note=BIG), env=TINY_LIMIT),
    score("wrong-api-key", 401, ("API key",), json=VALID, headers={"X-API-Key": "guess"}, env=API_KEY),
    at("/scores")("unknown-route", 404, ("Not Found",), json=VALID),
    # POST /score_batch
    batch("malformed-json", 400, ("Invalid JSON",), **raw(b'{"transactions": [')),
    batch("json-array", 400, ("Input should be an object",), json=[VALID]),
    batch("missing-transactions", 400, ("transactions", "Field required"), json={"rows": [VALID]}),
    batch("transactions-object", 400, ("transactions", "valid array"), json={"transactions": VALID}),
    batch("transactions-null", 400, ("transactions", "valid array"), json={"transactions": None}),
    batch("form-content-type", 400, ("transactions", "valid list"), data={"transactions": "t1,t2"}),
    batch("extra-field", 400, ("dry_run",), json={"transactions": [], "dry_run": True}),
    batch("empty", 422, ("transactions",), json={"transactions": []}),
    batch("10001-rows", 422, ("10001 rows", "at most 10000"), json={"transactions": [{"amount": 1}] * 10_001}),
    batch("oversized-body", 413, ("exceeds the limit",), json={"transactions": [VALID] * 20}, env=TINY_LIMIT),
    # POST /score_file (multipart field `file`)
    scorefile("json-instead-of-multipart", 400, ("file", "Invalid file type"), json={"file": "batch.csv"}),
    scorefile("malformed-multipart", 400, ("multipart",), **raw(b"garbage", MULTIPART)),
    scorefile("wrong-field-name", 400, ("file", "is missing"), files={"upload": ("b.csv", csv(), "text/csv")}),
    scorefile("text-instead-of-file", 400, ("file",), data={"file": "transaction_id,amount"}),
    scorefile("text-field-as-file", 400, ("file", "not a text value"), files={"file": (None, "transaction_id,amount")}),
    scorefile("truncated-multipart", 400, ("closing boundary",), **raw(b"--b0undary\r\ngarbage", MULTIPART)),
    scorefile("empty-file", 422, ("file is empty",), **upload("e.csv", b"")),
    scorefile("header-only", 422, ("no rows",), **upload("h.csv", csv())),
    scorefile("binary-garbage", 422, ("binary, not UTF-8 text",), **upload("g.csv", b"\x89PNG\r\n\x1a\n\x00\x00")),
    scorefile("parquet-that-is-not", 422, ("cannot read as parquet",), **upload("x.parquet", b"PAR1 not parquet")),
    scorefile("parquet-truncated", 422, ("cannot read as parquet",), **upload("c.pq", GOOD_PARQUET[:200])),
    scorefile("semicolon-csv", 422, ("';'-delimited", "comma-separated"), **upload("s.csv", b"a;b;c\n1;2;3\n")),
    scorefile("tab-csv", 422, ("-delimited", "comma-separated"), **upload("t.csv", csv().replace(b",", b"\t"))),
    scorefile("missing-columns", 422, ("lacks column(s) tx_datetime",), **upload("m.csv", TWO_COLUMNS)),
    scorefile("json-file", 422, ("lacks column(s)",), **upload("b.json", json.dumps([VALID]).encode())),
    scorefile("repeated-column", 422, ("repeats a column",), **upload("r.csv", REPEATED_COLUMN)),
    scorefile("unclosed-quote", 422, ("cannot read as csv",), **upload("q.csv", csv('"a,2026-06-14T12:00:00Z,1,2,3'))),
    scorefile("float-ids", 422, ("customer_id", "ids must be text or integers"), **upload("f.pq", FLOAT_IDS_PARQUET)),
    scorefile("200001-rows", 413, ("200,001 rows", "use /score_job"), **upload("n.csv", TOO_MANY_ROWS)),
    scorefile("oversized-body", 413, ("exceeds the limit",), **upload("big.csv", HUNDRED_ROWS), env=TINY_LIMIT),
    # /score_job: what the gateway and the task routes refuse up front (bad files: see the next test)
    job("json-instead-of-multipart", 400, ("file", "Invalid file type"), json={"file": "x.csv"}),
    job("malformed-json", 400, ("Invalid file type", "multipart/form-data"), **raw(b"{not json")),
    job("url-encoded-form", 400, ("file", "Invalid file type"), data={"file": "http://127.0.0.1:9/x.csv"}),
    job("text-field-as-file", 400, ("file", "not a text value"), files={"file": (None, "http://127.0.0.1:9/x.csv")}),
    job("oversized-body", 413, ("exceeds the limit",), **upload("big.csv", HUNDRED_ROWS), env=TINY_LIMIT),
    job("wrong-api-key", 401, ("API key",), **upload("b.csv", csv()), env=API_KEY),
    at("/score_job/status", "GET")("status-without-task-id", 400, ("task_id is required",)),
    at("/score_job/status", "GET")("status-of-unknown-task", 404, ("task_id not found",), params={"task_id": "no"}),
    at("/score_job/get", "GET")("result-of-unknown-task", 404, ("task_id not found",), params={"task_id": "no"}),
    # POST /feedback
    feedback("malformed-json", 400, ("Invalid JSON",), **raw(b'{"labels": [{')),
    feedback("malformed-multipart", 400, ("multipart",), **raw(b"garbage", MULTIPART)),
    feedback("missing-labels", 400, ("labels", "Field required"), json={}),
    feedback("empty-labels", 400, ("labels", "at least 1 item"), **labels()),
    feedback("labels-not-a-list", 400, ("labels", "valid array"), json={"labels": lab()}),
    feedback("missing-is-fraud", 400, ("is_fraud", "Field required"), **labels({"transaction_id": "x"})),
    feedback("is-fraud-2", 400, ("is_fraud", "0 or 1"), **labels(lab(is_fraud=2))),
    feedback("is-fraud-yes", 400, ("is_fraud", "0 or 1"), **labels(lab(is_fraud="yes"))),
    feedback("id-empty", 400, ("transaction_id", "at least 1 character"), **labels(lab(""))),
    feedback("id-129-chars", 400, ("transaction_id", "at most 128"), **labels(lab("x" * 129))),
    feedback("10001-labels", 400, ("labels", "at most 10000"), **labels(*[lab()] * 10_001)),
    feedback("extra-field", 400, ("source",), **labels(lab(source="chargeback"))),
    feedback("oversized-body", 413, ("exceeds the limit",), **labels(lab(BIG)), env=TINY_LIMIT),
    feedback("wrong-api-key", 401, ("API key",), **labels(lab()), headers={"Authorization": "Bearer no"}, env=API_KEY),
    # GET/POST /model
    model("post-malformed-json", 400, ("Invalid JSON",), **raw(b"{")),
    model("post-json-array", 400, ("Input should be an object",), json=[1]),
    model("put", 405, ("Method Not Allowed",), json={}, verb="PUT"),
    model("delete", 405, ("Method Not Allowed",), verb="DELETE"),
    model("post-oversized-body", 413, ("exceeds the limit",), json={"x": BIG}, env=TINY_LIMIT),
]


@pytest.mark.parametrize(("method", "path", "request_kwargs", "status", "names", "env"), CATALOGUE)
def test_bad_request_gets_a_4xx_naming_the_problem(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    request_kwargs: dict[str, Any],
    status: int,
    names: tuple[str, ...],
    env: dict[str, str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    response = client.request(method, path, **request_kwargs)
    assert response.status_code == status, response.text[:2000]
    missing = [name for name in names if name not in response.text]
    assert not missing, f"{missing} not in {response.text[:2000]}"


# --- /score_job: a task accepts any uploaded file; its result names the problem ---------------------


@pytest.mark.parametrize(
    ("request_kwargs", "status", "names"),
    [
        pytest.param(upload("e.csv", b""), 422, ("file is empty",), id="empty-file"),
        pytest.param(upload("x.parquet", b"PAR1 nope"), 422, ("cannot read as parquet",), id="parquet-that-is-not"),
        pytest.param(upload("s.csv", b"a;b;c\n1;2;3\n"), 422, ("';'-delimited",), id="semicolon-csv"),
        pytest.param(upload("m.csv", b"transaction_id,amount\n1,2\n"), 422, ("lacks column(s)",), id="missing-columns"),
        pytest.param(upload("g.csv", b"\x00\x01\x02binary"), 422, ("binary",), id="binary-garbage"),
    ],
)
def test_a_bad_job_upload_fails_its_task_with_a_4xx_naming_the_problem(
    client: TestClient, request_kwargs: dict[str, Any], status: int, names: tuple[str, ...]
) -> None:
    submitted = client.post("/score_job/submit", **request_kwargs)
    assert submitted.status_code == 200, submitted.text  # a task accepts first and fails later
    task_id = submitted.json()["task_id"]
    for _ in range(1_200):  # a bound on the polls, not a timing assertion
        state = client.get("/score_job/status", params={"task_id": task_id}).json()["status"]
        if state not in {"pending", "in_progress"}:
            break
        time.sleep(0.05)
    assert state == "failed", state
    result = client.get("/score_job/get", params={"task_id": task_id})
    assert result.status_code == status, result.text
    assert all(name in result.text for name in names), result.text


# --- batches: bad rows come back by index with a reason, the others are scored ------------------------


def row(case_id: str, bad_row: Any, *reason: str, token: str | None = None) -> Any:
    """A JSON batch case: ``bad_row`` between two good rows; ``token`` replaces an ``"@"`` amount verbatim."""
    return pytest.param(bad_row, token, reason, id=case_id)


@pytest.mark.parametrize(
    ("bad_row", "token", "reason"),
    [
        row("missing-customer_id", without("customer_id"), "customer_id", "Field required"),
        row("extra-field", tx("r-extra", channel="web"), "channel", "Extra inputs are not permitted"),
        row("negative-amount", tx("r-neg", amount=-1), *UNDER_ZERO),
        row("absurd-amount", tx("r-absurd", amount=5e6), *OVER_MAX),
        row("NaN-amount", tx("r-nan", amount="@"), "amount", token="NaN"),
        row("Infinity-amount", tx("r-inf", amount="@"), "amount", token="Infinity"),
        row("1e400-amount", tx("r-1e400", amount="@"), "amount", token="1e400"),
        row("text-amount", tx("r-text", amount="lots"), "amount", "valid number"),
        row("boolean-amount", tx("r-bool", amount=True), "amount"),
        row("future-datetime", tx("r-future", tx_datetime="2999-01-01T00:00:00Z"), "tx_datetime", "in the future"),
        row("garbage-datetime", tx("r-garbage", tx_datetime="yesterday"), "tx_datetime", "valid datetime"),
        row("empty-transaction_id", tx(""), "transaction_id", "at least 1 character"),
        row("numeric-terminal_id", tx("r-num", terminal_id=40), "terminal_id", "valid string"),
        row("not-an-object", "not an object", "object"),
    ],
)
def test_a_bad_row_in_a_json_batch_comes_back_by_index_and_the_rest_is_scored(
    client: TestClient, bad_row: Any, token: str | None, reason: tuple[str, ...]
) -> None:
    body = json.dumps({"transactions": [tx("row-ok-0"), bad_row, tx("row-ok-2")]})
    response = client.post("/score_batch", **raw(body.replace('"@"', token).encode() if token else body.encode()))
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["received"], out["scored"], out["rejected"]) == (3, 2, 1)
    assert out["received"] == out["scored"] + out["rejected"]
    assert [r["transaction_id"] for r in out["results"]] == ["row-ok-0", "row-ok-2"]
    [error] = out["errors"]
    assert error["index"] == 1
    assert all(part in error["reason"] for part in reason), error


def line(case_id: str, text: str, *reason: str) -> Any:
    """A CSV upload case: ``text`` (``T`` stands for a good timestamp) between two good lines."""
    return pytest.param(text.replace("T,", "2026-06-14T12:00:00Z,"), reason, id=case_id)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        line("truncated-line", "f-trunc,T,12,40", "line has 4 fields, the header 5"),
        line("extra-separators", "f-extra,T,12,40,3,9", "line has 6 fields, the header 5"),
        line("negative-amount", "f-neg,T,12,40,-5", *UNDER_ZERO),
        line("NaN-amount", "f-nan,T,12,40,NaN", "amount"),
        line("inf-amount", "f-inf,T,12,40,inf", "amount"),
        line("text-amount", "f-text,T,12,40,lots", "amount", "valid number"),
        line("unparseable-datetime", "f-date,14/06/2026 12:00,12,40,3", "tx_datetime"),
        line("future-datetime", "f-future,2999-01-01T00:00:00Z,12,40,3", "tx_datetime", "in the future"),
        line("empty-customer_id", "f-nocust,T,,40,3", "customer_id"),
    ],
)
def test_a_bad_line_in_an_uploaded_csv_comes_back_by_index_and_the_rest_is_scored(
    client: TestClient, line: str, reason: tuple[str, ...]
) -> None:
    body = csv("f-ok-0,2026-06-14T12:00:00Z,12,40,20.5", line, "f-ok-2,2026-06-14T12:05:00Z,13,41,7")
    response = client.post("/score_file", **upload("batch.csv", body))
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["received"], out["scored"], out["rejected"]) == (3, 2, 1)
    assert out["received"] == out["scored"] + out["rejected"]
    [error] = out["errors"]
    assert error["index"] == 1
    assert all(part in error["reason"] for part in reason), error


# --- open bugs that need a first request --------------------------------------------------------------


@pytest.mark.parametrize(
    "change", [{"customer_id": "someone-else"}, {"tx_datetime": "2026-05-01T00:00:00Z"}], ids=["customer", "earlier"]
)
def test_a_transaction_id_sent_again_with_other_values_gets_a_4xx(client: TestClient, change: dict[str, Any]) -> None:
    tid = f"reused-{next(iter(change))}"
    assert client.post("/score", json=tx(tid)).status_code == 200
    again = client.post("/score", json=tx(tid, **change))
    assert 400 <= again.status_code < 500, again.text
    assert "transaction_id" in again.text


def test_a_reused_transaction_id_in_a_batch_comes_back_in_errors(client: TestClient) -> None:
    rows = [tx("reused-batch"), tx("reused-batch", customer_id="someone-else"), tx("reused-batch-ok")]
    response = client.post("/score_batch", json={"transactions": rows})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["received"] == out["scored"] + out["rejected"] == 3
    assert [e["index"] for e in out["errors"]] == [1]


# --- CLI: a non-zero exit naming the problem, no traceback ----------------------------------------


@dataclass
class CliResult:
    exit_code: int
    output: str
    exception: BaseException | None

    @property
    def text(self) -> str:
        """The output without rich's boxes, on one line (rich wraps long messages)."""
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", self.output).split())


def _prefect_console_handlers() -> list[logging.Handler]:
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-inputs")
    (root / "garbage.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 not a table")
    (root / "fake.parquet").write_bytes(b"PAR1 this is not parquet")
    (root / "empty.csv").write_bytes(b"")
    (root / "semicolon.csv").write_bytes(b"a;b;c\n1;2;3\n")
    (root / "unknown-columns.csv").write_bytes(b"foo,bar\n1,2\n")
    (root / "transactions.json").write_text(json.dumps([VALID]))
    (root / "folder").mkdir()
    return root


@pytest.fixture
def fraudops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, cli_files: Path
) -> Callable[..., CliResult]:
    """Run the CLI in process on an empty home of its own, with Prefect's console log in the output.

    A leading ``@/`` in an argument stands for the directory of the bad input files.
    """
    from flows.cli import app
    from tests.helpers import use_own_home

    use_own_home(monkeypatch, tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> CliResult:
        prefect_log = io.StringIO()
        handlers = _prefect_console_handlers()
        before = [(h.console.file, h.stream) for h in handlers]  # type: ignore[attr-defined]
        for h in handlers:
            h.console.file, h.stream = prefect_log, prefect_log  # type: ignore[attr-defined]
        try:
            result = CliRunner().invoke(app, [re.sub("^@/", f"{cli_files}/", a) for a in args])
        finally:
            for h, (file, stream) in zip(handlers, before, strict=True):
                h.console.file, h.stream = file, stream  # type: ignore[attr-defined]
        return CliResult(result.exit_code, result.output + prefect_log.getvalue(), result.exception)

    return run


def cli(case_id: str, args: str, *names: str) -> Any:
    return pytest.param(args.split(), names, id=case_id)


SMALL_WORLD = "--days 1 --customers 20 --terminals 20"
TINY_WORLD = "--customers 10 --terminals 10 --days 1"
EVAL = "evaluate --protocol B --data"
CLI = [
    cli("simulate-start-not-a-date", "simulate --start April", "--start", "'April' is not a date (YYYY-MM-DD)"),
    cli("simulate-start-feb-30", "simulate --start 2026-02-30", "--start", "'2026-02-30' is not a date"),
    cli("simulate-origin-not-a-date", "simulate --origin xx", "--origin", "'xx' is not a date"),
    cli("simulate-negative-days", "simulate --days -3", "--days", "greater than or equal to 1"),
    cli("simulate-zero-days", "simulate --days 0", "--days", "greater than or equal to 1"),
    cli("simulate-5-customers", "simulate --customers 5", "--customers", "greater than or equal to 10"),
    cli("simulate-terminals-not-a-number", "simulate --terminals many", "--terminals", "valid integer"),
    cli("simulate-unknown-drift", f"simulate --drift meteor {SMALL_WORLD}", "unknown drift preset 'meteor'"),
    cli("simulate-start-before-origin", f"simulate --start 2026-05-01 --origin 2026-06-01 {SMALL_WORLD}", "origin"),
    cli("simulate-out-txt", "simulate --days 1 --out @/out.txt", "--out", "must end in .parquet or .csv"),
    cli("simulate-no-transactions", f"simulate {TINY_WORLD} --out @/none.csv", "made no transactions"),
    cli("simulate-unknown-option", "simulate --bogus", "No such option", "--bogus"),
    cli("ingest-no-path", "ingest", "Missing argument 'path'"),
    cli("ingest-missing-file", "ingest @/missing.csv", "'path'", "missing.csv: no such file"),
    cli("ingest-directory", "ingest @/folder", "'path'", "is a directory"),
    cli("ingest-unknown-format", "ingest @/garbage.csv --format excel", "--profile", "no profile named 'excel'"),
    cli("ingest-unknown-profile", "ingest @/garbage.csv --profile nope", "--profile", "no profile named 'nope'"),
    cli("ingest-profile-not-yaml", "ingest @/garbage.csv --profile @/garbage.csv", "--profile", "not valid YAML"),
    cli("ingest-binary-garbage", "ingest @/garbage.csv", "ingest failed", "garbage.csv"),
    cli("ingest-parquet-that-is-not", "ingest @/fake.parquet", "ingest failed", "cannot read as parquet"),
    cli("ingest-empty-file", "ingest @/empty.csv", "ingest failed", "file is empty"),
    cli("ingest-semicolon-csv", "ingest @/semicolon.csv", "ingest failed", "';'-delimited"),
    cli(
        "ingest-unknown-columns", "ingest @/unknown-columns.csv", "ingest failed", "no shipped profile fits the columns"
    ),
    cli("ingest-json-file", "ingest @/transactions.json", "ingest failed", "unsupported extension '.json'"),
    cli("train-start-not-a-date", "train --start yesterday", "--start", "'yesterday' is not a date"),
    cli("train-end-not-a-date", "train --end 2026-99-01", "--end", "'2026-99-01' is not a date"),
    cli("train-end-before-start", "train --start 2026-06-10 --end 2026-06-01", "--end 2026-06-01 is before --start"),
    cli("train-negative-label-delay", "train --label-delay -1", "--label-delay", "greater than or equal to 0"),
    cli("train-unknown-threshold-policy", "train --threshold-policy magic", "--threshold-policy", "expected cost"),
    cli("train-zero-alert-budget", "train --alert-budget 0", "--alert-budget"),
    cli("train-alert-budget-over-1", "train --alert-budget 2", "--alert-budget"),
    cli("train-negative-search-budget", "train --search-budget -1", "--search-budget"),
    cli("train-window-without-data", "train --start 2030-01-01", "training failed", "no transactions in 2030-01-01"),
    cli("promote-unknown-mode", "promote --mode sometimes", "--mode", "expected auto or manual"),
    cli("promote-min-ap-over-1", "promote --min-ap 2", "--min-ap"),
    cli("promote-negative-max-ap-drop", "promote --max-ap-drop -0.1", "--max-ap-drop"),
    cli("promote-zero-approval-timeout", "promote --approval-timeout 0", "--approval-timeout"),
    cli("promote-without-a-challenger", "promote", "promotion failed"),
    cli("rollback-unknown-option", "rollback --bogus", "No such option", "--bogus"),
    cli("rollback-without-a-champion", "rollback --no-build", "rollback failed", "nothing to roll back"),
    cli("build-extra-argument", "build now", "unexpected extra argument", "now"),
    cli("build-without-a-champion", "build", "build failed", "no 'champion' alias", "train and promote first"),
    cli("serve-unknown-bento", "serve --bento nosuch:v9", "--bento", "no Bento 'nosuch:v9'"),
    cli("serve-invalid-bento-tag", "serve --bento not/a:tag!", "--bento", "no Bento 'not/a:tag!'"),
    cli("serve-port-not-a-number", "serve --port http", "--port", "valid integer"),
    cli("serve-port-70000", "serve --port 70000", "--port", "65535"),
    cli("serve-negative-port", "serve --port -1", "--port"),
    cli("score-from-not-a-date", "score --from nope", "--from", "'nope' is not a date"),
    cli("score-to-not-a-date", "score --to 2026-13-01", "--to", "'2026-13-01' is not a date"),
    cli("score-to-before-from", "score --from 2026-06-10 --to 2026-06-01", "--to 2026-06-01 is before --from"),
    cli("score-negative-dask-workers", "score --dask-workers -1", "--dask-workers"),
    cli("score-without-a-champion", "score", "scoring failed", "no 'champion' alias"),
    cli("monitor-negative-days", "monitor --days -1", "--days", "greater than or equal to 1"),
    cli("monitor-unknown-retrain", "monitor --retrain maybe", "--retrain", "expected auto, deployment, inline"),
    cli("monitor-without-a-champion", "monitor", "monitoring failed", "nothing to monitor"),
    cli("evaluate-no-protocol", "evaluate --data @/garbage.csv", "Missing option", "--protocol"),
    cli("evaluate-no-data", "evaluate --protocol B", "Missing option", "--data"),
    cli("evaluate-unknown-protocol", "evaluate --protocol Z --data @/garbage.csv", "--protocol", "expected one"),
    cli("evaluate-missing-file", f"{EVAL} @/missing.pq", "--data", "missing.pq: no such file"),
    cli("evaluate-directory", f"{EVAL} @/folder", "--data", "is a directory"),
    cli(
        "evaluate-unknown-feature-set",
        f"{EVAL} @/garbage.csv --feature-set xl",
        "--feature-set",
        "expected one of baseline, extended, labels",
    ),
    cli("evaluate-negative-budget", f"{EVAL} @/garbage.csv --budget-seconds -5", "--budget-seconds"),
    cli("evaluate-zero-trials", f"{EVAL} @/garbage.csv --max-trials 0", "--max-trials"),
    cli("evaluate-binary-garbage", f"{EVAL} @/garbage.csv", "evaluation failed", "garbage.csv"),
    cli("evaluate-parquet-that-is-not", f"{EVAL} @/fake.parquet", "evaluation failed", "cannot read as parquet"),
    cli("evaluate-unknown-columns", f"{EVAL} @/unknown-columns.csv", "evaluation failed", "no shipped profile fits"),
]


@pytest.mark.parametrize(("args", "names"), CLI)
def test_bad_cli_arguments_exit_non_zero_naming_the_problem(
    fraudops: Callable[..., CliResult], args: list[str], names: tuple[str, ...]
) -> None:
    result = fraudops(*args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    missing = [name for name in names if name not in result.text]
    assert not missing, f"{missing} not in:\n{result.output}"


# --- after the whole catalogue ---------------------------------------------------------------------


def test_after_the_catalogue_the_service_is_ready_and_still_scores(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    response = client.post("/score", json=tx("after-the-catalogue"))
    assert response.status_code == 200, response.text
    assert 0 <= response.json()["fraud_probability"] <= 1
    assert client.get("/model").status_code == 200
