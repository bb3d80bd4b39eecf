"""The BentoML 1.4 service: real-time and batch scoring, the analysts' alert queue, the Gradio UI at /ui."""

from __future__ import annotations

import datetime as dt
import gc
import re
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import gradio as gr
import polars as pl
import pydantic_core
from bentoml.exceptions import BentoMLException
from fastapi import Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Field
from starlette.requests import Request
from starlette.responses import Response

from config.settings import LiveSettings, Settings
from data.contract import TransactionIn
from data.feedback import FeedbackLog, utc_now
from data.profiles import Profile, profile_from_dict
from features.definitions import to_epoch_us
from features.stores import open_store
from model.bundle import read_bundle, read_examples
from model.card import CARD_FILE, ModelCard
from service.gateway import Gateway
from service.profiled import request_model, uses_own_request
from service.recording import MONITOR_CLASS, AlertDesk, RecordingScorer
from service.schemas import (
    MAX_BATCH_ROWS,
    MAX_FEEDBACK_LABELS,
    MAX_VERDICTS,
    AlertsResponse,
    BatchResponse,
    FeedbackItem,
    FeedbackResponse,
    ModelSummary,
    ScoreResponse,
    Verdict,
    VerdictsResponse,
    batch_request_for,
)
from service.scoring import PARQUET_MEDIA_TYPE, Scorer, TransactionConflict
from service.traffic import install as fix_traffic_timeout
from service.ui import ScoreForm, build_ui
from service.uploads import TooManyRows, UploadError, read_upload

fix_traffic_timeout()  # before BentoML builds the app: its timeout kept every request for 60 s (service/traffic.py)

#: Read once at import: the model tag and monitor directory go into the service definition below.
SETTINGS = Settings()


def _served_model() -> tuple[Profile | None, dict[str, dict[str, Any]]]:
    """The served model's dataset profile (from its card) and example requests (None, {}: no such model yet)."""
    try:
        directory = Path(bentoml.models.get(SETTINGS.model_tag).path)
        card = ModelCard.from_json((directory / CARD_FILE).read_text())
        examples = read_examples(directory)
    except (BentoMLException, OSError, ValueError):
        return None, {}  # the service fails clearly at start-up when it loads the model
    return (profile_from_dict(card.profile, "model card") if card.profile else None), examples


#: The request of /score (and of each /score_batch row): the model's dataset profile's own layout for a
#: profile with extra columns or keys it lacks (service/profiled.py), else the product's TransactionIn.
SERVED_PROFILE, EXAMPLES = _served_model()
SCORE_REQUEST: type[BaseModel] = request_model(SERVED_PROFILE) if uses_own_request(SERVED_PROFILE) else TransactionIn  # type: ignore[arg-type]
_REQUEST_COLUMNS = {name: field.alias or name for name, field in SCORE_REQUEST.model_fields.items()}
SCORE_BATCH_REQUEST = batch_request_for(SCORE_REQUEST)


def _current() -> FraudService | None:
    """The service instance of this worker (None while it starts)."""
    try:
        return bentoml.get_current_service()  # type: ignore[no-any-return]
    except BentoMLException:
        return None


def _recording_scorer() -> RecordingScorer:
    """The UI's scorer: the API's score-and-record path, or its read-only twin in demo mode."""
    service = _current()
    if service is None:
        raise gr.Error("the model is still loading")
    return service.demo_recording if LiveSettings.ui_demo() else service.recording


def _alert_desk() -> AlertDesk:
    """The UI's alert queue: the API's, refused in demo mode (it would show cards and take verdicts without the key)."""
    service = _current()
    if service is None:
        raise gr.Error("the model is still loading")
    if LiveSettings.ui_demo():
        raise gr.Error(
            "the alert queue needs the API key: the demo UI (FRAUDOPS_UI_DEMO) is read-only", print_exception=False
        )
    return service.alert_desk


# Gradio 6 + BentoML: mount through FastAPI, not bentoml.gradio (its /ui/ answers 500 there).
_NUMBERS = SERVED_PROFILE.number_columns if uses_own_request(SERVED_PROFILE) else frozenset({"amount"})  # type: ignore[union-attr]
_FORM = ScoreForm.of(SCORE_REQUEST, _NUMBERS, EXAMPLES)
ui_app = gr.mount_gradio_app(FastAPI(), build_ui(_recording_scorer, _alert_desk, _FORM), path="/")
# The GET routes (BentoML APIs are POST only): FastAPI class views of the service, mounted at the root
# (BentoML's PassiveMount passes on only the paths these routes match). No docs routes of its own: the
# service's OpenAPI document includes them.
get_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@get_app.exception_handler(RequestValidationError)
async def _bad_query(_: Request, exc: RequestValidationError) -> Response:
    """A bad query parameter is a 400 in the documented shape, as BentoML answers a bad body."""
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    problems = "; ".join(f"{'.'.join(str(p) for p in d['loc'][1:]) or 'query'}: {d['msg']}" for d in detail)
    body = pydantic_core.to_json({"error": problems, "detail": detail})
    return Response(body, status_code=HTTPStatus.BAD_REQUEST, media_type="application/json")


def _iso_day(value: object) -> object:
    """Only ``YYYY-MM-DD`` text is a day (pydantic alone would also take ``0`` as 1970-01-01)."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected a date YYYY-MM-DD")
    return value


def _only_query_parameters(*names: str) -> Any:
    """A FastAPI dependency refusing query parameters other than ``names`` (400 naming them), as bodies do."""

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            raise RequestValidationError(
                [
                    {"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"}
                    for name in unknown
                ]
            )

    return check


def _model_info() -> dict[str, Any] | None:
    service = _current()
    return service.scorer.summary() if service is not None else None


def _json(body: bytes) -> Response:
    """An answer encoded by us (pydantic-core), so BentoML does not build and re-check a model per row."""
    return Response(content=body, media_type="application/json")


def _error(status: HTTPStatus, message: str) -> Response:
    """An error answer in the documented shape (``{"error": ...}``, service/openapi.py)."""
    return Response(pydantic_core.to_json({"error": message}), status_code=status, media_type="application/json")


def _batch_problem(count: int, limit: int, where: str) -> str | None:
    if count == 0:
        return f"no transactions in {where}; send 1 to {limit}"
    if count > limit:
        return f"{count} rows in {where}; at most {limit} per request"
    return None


@bentoml.service(
    name="fraud_service",
    workers=SETTINGS.workers,  # FRAUDOPS_WORKERS, also under a plain `bentoml serve` (a BentoML config file wins)
    traffic={"timeout": 60},
    http={"host": "127.0.0.1"},
    monitoring={
        "enabled": True,
        "type": MONITOR_CLASS,
        "options": {"log_path": str(SETTINGS.monitor_path)},
    },
)
@bentoml.asgi_app(ui_app, path="/ui")
@bentoml.asgi_app(get_app, path="/")
class FraudService:
    """Scores raw card transactions with the packaged champion model."""

    bento_model = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        settings = Settings()
        bundle = read_bundle(Path(self.bento_model.path))
        # One state per model version (a tag like ``:latest`` would share it across versions).
        name = self.bento_model.tag.name
        store = open_store(
            settings.online_store,
            bundle.spec,
            bundle.state,
            settings.state_path(name, bundle.version),
            carry_from=settings.other_state_paths(name, bundle.version),  # a model switch keeps what was scored
        )
        self.scorer = Scorer(bundle, store=store)
        salt = settings.hash_salt()
        # What was scored and every label told, for the lake and the alert queue (kept across restarts and models).
        self.feedback_log = FeedbackLog(settings.feedback_path)
        self.recording = RecordingScorer(self.scorer, salt, settings.monitor_path, log=self.feedback_log)
        self.demo_recording = RecordingScorer(self.scorer, salt, settings.monitor_path, read_only=True)
        self.alert_desk = AlertDesk(self.scorer, self.feedback_log, settings.alert_capacity)
        self.max_file_rows, self.max_job_rows = settings.max_file_rows, settings.max_job_rows
        # The loaded model, state and libraries are long-lived: keep them out of every later GC pass
        # (measured: /score p99 at concurrency 32 fell from 653 to 185 ms, bench/results/service.json).
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/score", input_spec=SCORE_REQUEST, output_spec=ScoreResponse)
    async def score(self, **transaction: Any) -> Response:
        """Score one raw transaction: probability, decision at the model's threshold, reasons.

        ``async``: BentoML runs it on the event loop, skipping a sync API's thread hop (measured on the
        minimal service, bench/results/service.md ``lever_async_api``); the work is ~0.5 ms of CPU.
        A model of a dataset profile with its own layout takes that layout (service/profiled.py).
        """
        if self.scorer.requests is not None:
            return self._score_profiled({_REQUEST_COLUMNS[k]: v for k, v in transaction.items()})
        tx = TransactionIn.model_construct(**transaction)  # BentoML validated it against input_spec
        try:
            result = self.recording.score_one(tx)
        except TransactionConflict as exc:
            return _error(HTTPStatus.CONFLICT, str(exc))
        return _json(pydantic_core.to_json(result))  # output_spec documents it

    def _score_profiled(self, record: dict[str, Any]) -> Response:
        """One request in the profile's layout: mapped, checked and scored as a batch of one."""
        batch = self.recording.score_batch([record])
        if batch.errors:
            reason = batch.errors[0]["reason"]
            status = HTTPStatus.CONFLICT if "was already scored with another" in reason else HTTPStatus.BAD_REQUEST
            return _error(status, reason)
        return _json(pydantic_core.to_json(batch.results[0]))

    @bentoml.api(route="/score_batch", input_spec=SCORE_BATCH_REQUEST, output_spec=BatchResponse)
    def score_batch(self, transactions: list[Any]) -> Response:
        """Score a JSON list of transactions (at most 10,000); invalid rows come back by index with a reason."""
        problem = _batch_problem(len(transactions), MAX_BATCH_ROWS, "the batch")
        return _error(HTTPStatus.UNPROCESSABLE_ENTITY, problem) if problem else self._scored(transactions)

    @bentoml.api(route="/score_file", output_spec=BatchResponse)
    def score_file(self, file: Path, ctx: bentoml.Context) -> Response:
        """Score an uploaded CSV or Parquet file of raw transactions (multipart field ``file``).

        JSON (``BatchResponse``) by default. With ``Accept: application/vnd.apache.parquet`` the answer is a
        Parquet file of the results (one row each; ``reasons`` a list of structs), its key-value metadata
        ``fraudops.errors`` the rejected rows as JSON (index, transaction_id, reason), and the headers
        ``X-Rows-Received``/``X-Rows-Scored``/``X-Rows-Rejected`` the counts.
        """
        try:
            return self._scored(*self._read(file, self.max_file_rows), parquet=_wants_parquet(ctx))
        except TooManyRows as exc:
            return _context_error(ctx, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{exc} (use /score_job)")
        except UploadError as exc:
            return _context_error(ctx, HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))

    @bentoml.task(route="/score_job", output_spec=BatchResponse)
    def score_job(self, file: Path, ctx: bentoml.Context) -> Response:
        """Large files as a task: ``/score_job/submit`` → ``/score_job/status`` → ``/score_job/get``.

        A file that cannot be read fails the task (status ``failed``; ``/score_job/get`` says why). An
        ``Accept: application/vnd.apache.parquet`` on the submit asks for the results as Parquet, as for
        ``/score_file``.
        """
        try:
            return self._scored(*self._read(file, self.max_job_rows), parquet=_wants_parquet(ctx))
        except TooManyRows as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
        except UploadError as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus.UNPROCESSABLE_ENTITY) from None

    @bentoml.api(route="/feedback", output_spec=FeedbackResponse)
    def feedback(
        self, labels: Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_FEEDBACK_LABELS)]
    ) -> FeedbackResponse:
        """Labels for earlier transactions: update the online state, store them for retraining.

        Each is a ``feedback`` label event known from its arrival (now), in the log and in the state alike.
        """
        now = utc_now()
        known = self.scorer.apply_labels(labels, label_us=to_epoch_us(now), source="feedback")
        stored = self.feedback_log.record(
            ((item.transaction_id, item.is_fraud, k) for item, k in zip(labels, known, strict=True)),
            self.scorer.version,
            label_time=now,
        )
        unknown = [item.transaction_id for item, k in zip(labels, known, strict=True) if not k]
        return FeedbackResponse(
            received=len(labels),
            applied=len(labels) - len(unknown),
            unknown=len(unknown),
            stored=stored,
            unknown_ids=unknown[:100],
        )

    @get_app.get(
        "/alerts",
        response_model=AlertsResponse,
        tags=["Service APIs"],
        operation_id="fraud_service__alerts",
        dependencies=[Depends(_only_query_parameters("date", "limit"))],
    )
    def alerts(
        self,
        date: Annotated[
            dt.date | None,
            BeforeValidator(_iso_day),
            Query(description="Transaction day (UTC), YYYY-MM-DD; default the newest scored day."),
        ] = None,
        limit: Annotated[
            int | None, Query(ge=1, description="Alerts to list; at most (and by default) the capacity k.")
        ] = None,
    ) -> AlertsResponse:
        """The day's alert queue for the analysts: one alert per card, ranked by score, at most k a day.

        Each alert is the card's highest-scored alerted transaction of the day, with its reasons, the card's
        recent transactions and the analyst's verdict once given; ``figures`` has the queue's alerts,
        reviewed, frauds, precision (realised CP@k) and backlog.
        """
        return AlertsResponse.model_validate(self.alert_desk.queue(date, limit))

    @bentoml.api(route="/alerts/verdicts", output_spec=VerdictsResponse)
    def alert_verdicts(
        self, verdicts: Annotated[list[Verdict], Field(min_length=1, max_length=MAX_VERDICTS)]
    ) -> VerdictsResponse:
        """Analysts' verdicts on alerts: each becomes an ``analyst`` label event now and updates the online state.

        A transaction id the service has not scored is refused with its index and reason;
        ``received == accepted + rejected``.
        """
        return VerdictsResponse.model_validate(self.alert_desk.review(verdicts))

    @bentoml.api(route="/model")
    def model(self) -> dict[str, Any]:
        """Model card: version, metrics, data window, threshold, features (also ``GET /model``)."""
        return self.scorer.summary()

    def _read(self, file: Path, max_rows: int) -> tuple[pl.DataFrame, dict[int, str]]:
        upload = read_upload(file, max_rows, "upload", *self.scorer.upload_columns)  # TooManyRows / UploadError
        return upload.frame, upload.unreadable

    def _scored(
        self, rows: list[Any] | pl.DataFrame, unreadable: dict[int, str] | None = None, parquet: bool = False
    ) -> Response:
        """Score and record JSON records or an upload's columns; answer JSON, or Parquet when asked."""
        if isinstance(rows, pl.DataFrame):
            batch = self.recording.score_frame(rows, unreadable)
        else:
            batch = self.recording.score_batch(rows, unreadable)
        if not parquet:
            return _json(batch.to_json())  # output_spec documents it
        headers = {
            "X-Rows-Received": str(batch.received),
            "X-Rows-Scored": str(batch.frame.height),
            "X-Rows-Rejected": str(len(batch.errors)),
        }
        return Response(content=batch.to_parquet(), media_type=PARQUET_MEDIA_TYPE, headers=headers)


def _context_error(ctx: bentoml.Context, status: HTTPStatus, message: str) -> Response:
    """:func:`_error` from an API that takes the request context (BentoML answers with the context's status)."""
    ctx.response.status_code = status
    return _error(status, message)


def _wants_parquet(ctx: bentoml.Context) -> bool:
    """Whether the request's Accept header asks for Parquet (``application/vnd.apache.parquet``)."""
    return PARQUET_MEDIA_TYPE in ctx.request.headers.get("accept", "")


FraudService.add_asgi_middleware(Gateway, model_info=_model_info, summary_schema=ModelSummary.model_json_schema())
