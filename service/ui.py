"""Gradio front end: score one transaction, score a CSV or Parquet batch, read the model card, work the alerts.

Three tabs backed by the service's :class:`~service.recording.RecordingScorer` (the same
score-and-record path as the API: prediction log, counters, conflict rules), and an Alerts tab backed
by its :class:`~service.recording.AlertDesk` (the same queue and verdict path as ``GET /alerts`` and
``POST /alerts/verdicts``):

- **Score a transaction**: the decision, the reasons as a signed bar chart, the JSON response.
- **Batch**: a file of raw transactions in the canonical schema; a results table, the rejected rows
  (index and reason), ``received = scored + rejected`` and a CSV of the results to download.
- **Model card**: version, data window, threshold and its policy, the test metrics next to the
  published anchors (:mod:`model.anchors`), the precision-recall curve and the feature list.
- **Alerts**: the day's alert queue (one alert per card, ranked by score, at most the capacity k), the
  queue's figures, the selected alert's reasons and card history, and **Fraud** / **Genuine** buttons
  that record the analyst's verdict (a label event, applied to the online state).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from pydantic import BaseModel, ValidationError

from config.settings import LiveSettings
from data.contract import TransactionIn
from model.anchors import ANCHORS, PERFECT_CP_AT_100_PROTOCOL_A, PROTOCOLS, SOURCE
from model.card import ModelCard
from model.policies import ThresholdPolicy
from service.recording import AlertDesk, RecordingScorer
from service.schemas import MAX_BATCH_ROWS, BatchResponse, Reason, ScoreResponse, Verdict, describe_validation_error
from service.scoring import TransactionConflict
from service.uploads import REQUIRED, UploadError, read_upload

#: The columns a batch file must have (the canonical raw transaction, without the label).
BATCH_COLUMNS = REQUIRED
#: Result CSVs older than this are removed from the download directory.
_DOWNLOAD_MAX_AGE_S = 3600.0
_DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "fraudops-ui-downloads"

RESULT_COLUMNS = ["transaction_id", "probability", "decision", "top_reason"]
REJECTED_COLUMNS = ["index", "transaction_id", "reason"]
DOWNLOAD_COLUMNS = [
    "index",
    "transaction_id",
    "fraud_probability",
    "decision",
    "threshold",
    "model_version",
    "top_reason",
    "reasons",
    "error",
]
REASON_COLUMNS = ["feature", "value", "contribution", "direction"]
COMPARISON_COLUMNS = ["source", "protocol / window", "model", "AUC ROC", "AP", "CP@100"]
PR_COLUMNS = ["recall", "precision", "threshold"]
ALERT_COLUMNS = ["rank", "card", "transaction_id", "amount", "score", "reasons", "verdict"]
RECENT_COLUMNS = ["transaction_id", "tx_datetime", "terminal_id", "amount", "score", "decision"]


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, NaN or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Any, digits: int = 3) -> str:
    """A metric with ``digits`` decimals, or ``n/a``."""
    number = _number(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def user_error(message: str, title: str) -> gr.Error:
    """A :class:`gradio.Error` for bad input: shown to the user, not logged with a traceback."""
    return gr.Error(message, title=title, print_exception=False)


def _reason_text(reason: Reason) -> str:
    """``feature = value (+0.123)``: a reason in one short string."""
    return f"{reason.feature} = {reason.value:g} ({reason.contribution:+.3f})"


# --- batch files -------------------------------------------------------------------------------------


def batch_tables(batch: BatchResponse) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The results table, the rejected rows and the downloadable frame (every received row, file order)."""
    rejected_at = {e.index for e in batch.errors}
    scored_at = [i for i in range(batch.received) if i not in rejected_at]
    results = pd.DataFrame(
        [
            {
                "transaction_id": r.transaction_id,
                "probability": round(r.fraud_probability, 4),
                "decision": r.decision,
                "top_reason": _reason_text(r.reasons[0]) if r.reasons else "",
            }
            for r in batch.results
        ],
        columns=RESULT_COLUMNS,
    )
    rejected = pd.DataFrame(
        [{"index": e.index, "transaction_id": e.transaction_id, "reason": e.reason} for e in batch.errors],
        columns=REJECTED_COLUMNS,
    )
    rows = [
        {
            "index": index,
            "transaction_id": r.transaction_id,
            "fraud_probability": r.fraud_probability,
            "decision": r.decision,
            "threshold": r.threshold,
            "model_version": r.model_version,
            "top_reason": r.reasons[0].feature if r.reasons else "",
            "reasons": "; ".join(_reason_text(reason) for reason in r.reasons),
            "error": "",
        }
        for index, r in zip(scored_at, batch.results, strict=True)
    ] + [
        {"index": e.index, "transaction_id": e.transaction_id, "decision": "rejected", "error": e.reason}
        for e in batch.errors
    ]
    download = pd.DataFrame(rows, columns=DOWNLOAD_COLUMNS).sort_values("index", kind="stable")
    return results, rejected, download


def write_download(frame: pd.DataFrame, source_name: str) -> str:
    """Write ``frame`` as ``<source>-scored.csv`` in a fresh temporary file; prune old downloads."""
    _DOWNLOAD_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - _DOWNLOAD_MAX_AGE_S
    for old in _DOWNLOAD_DIR.glob("*.csv"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:  # another request removed it first
            pass
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(source_name).stem)[:60] or "batch"
    with tempfile.NamedTemporaryFile(
        "w", dir=_DOWNLOAD_DIR, prefix=f"{stem}-", suffix="-scored.csv", delete=False, newline=""
    ) as out:
        frame.to_csv(out, index=False)
    return out.name


# --- model card ----------------------------------------------------------------------------------------


def describe_policy(policy: ThresholdPolicy | None) -> str:
    """The threshold policy in words."""
    if policy is None:
        return "not recorded in this card"
    if policy.kind == "cost":
        return (
            f"cost: minimises {_fmt(policy.per_alert, 2)} per alert plus "
            f"{_fmt(policy.missed_fraud_share, 2)} x the amount of each missed fraud, on the validation window"
        )
    if policy.kind == "budget":
        return f"alert budget: the top {policy.alert_budget:.2%} of transactions on the validation window"
    return "best F1 on the validation window"


def comparison_table(card: ModelCard) -> pd.DataFrame:
    """This model's (and its baseline's) test metrics above the published anchors."""
    metrics, baseline = card.metrics, card.baseline_metrics
    window = f"test {card.split.test_start}..{card.split.test_end}"
    rows = [
        ["this model", window, f"XGBoost v{card.model_version or '?'}"]
        + [_fmt(metrics.get(f"test_{k}")) for k in ("auc", "ap", "cp_at_100")],
        ["this run's baseline", window, "logistic regression"]
        + [_fmt(baseline.get(f"test_{k}")) for k in ("auc", "ap", "cp_at_100")],
    ]
    rows += [["published", a.protocol, a.model, _fmt(a.auc), _fmt(a.ap), _fmt(a.cp_at_100)] for a in ANCHORS]
    rows.append(["published", "A", "perfect ranker", "n/a", "n/a", _fmt(PERFECT_CP_AT_100_PROTOCOL_A)])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def pr_curve_frame(card: ModelCard) -> pd.DataFrame:
    """The card's test precision-recall curve; empty (with the columns) when the card has none."""
    curve = card.pr_curve
    if not (len(curve.precision) == len(curve.recall) == len(curve.threshold)):  # ragged: treat as absent
        return pd.DataFrame(columns=PR_COLUMNS, dtype=float)
    frame = pd.DataFrame({"recall": curve.recall, "precision": curve.precision, "threshold": curve.threshold})
    return frame.sort_values(["recall", "precision"], ascending=[True, False], ignore_index=True)


def card_summary(card: ModelCard, has_curve: bool, state_size: int | None = None) -> str:
    """Markdown: version, data window, threshold and policy, test metrics at the threshold, sources."""
    split, metrics, rows = card.split.to_dict(), card.metrics, card.rows
    delay = card.spec.label_delay_days
    seen = "?" if state_size is None else f"{state_size:,}"

    def window(part: str) -> str:
        count = rows.get(part)
        size = f" ({count:,} rows)" if isinstance(count, int) else ""
        return f"{split[f'{part}_start']} .. {split[f'{part}_end']}{size}"

    lines = [
        f"### Model v{card.version}",
        f"MLflow run `{card.run_id or '?'}`; online state holds {seen} transactions.",
        "",
        "| window / setting | value |",
        "|---|---|",
        f"| train window | {window('train')} |",
        f"| validation window | {window('valid')} |",
        f"| test window | {window('test')} |",
        f"| label delay | {delay} days |",
        f"| decision threshold | {_fmt(card.threshold, 4)} on the fraud probability |",
        f"| threshold policy | {describe_policy(card.threshold_policy)} |",
        f"| test precision / recall / alert rate at the threshold | {_fmt(metrics.get('test_precision'))} / "
        f"{_fmt(metrics.get('test_recall'))} / {_fmt(metrics.get('test_alert_rate'), 4)} |",
        "",
        f"**Metrics vs the published anchors.** The anchors are the baselines published with the handbook's "
        f"simulated data ({SOURCE}):",
        "",
    ]
    lines += [f"- *{p.name}*: {p.description}." for p in PROTOCOLS]
    lines += [
        "",
        "They compare directly only when this model was trained and tested on the handbook data under the "
        "same protocol; on other data (e.g. the demo's simulated world) they are a sanity range.",
    ]
    if not has_curve:
        lines += ["", "_This model's card has no precision-recall curve (it predates the curve in the card)._"]
    return "\n".join(lines)


# --- alert queue ---------------------------------------------------------------------------------------


def _reasons_text(reasons: list[dict[str, Any]]) -> str:
    """An alert's reasons (plain dicts) in one line."""
    return "; ".join(_reason_text(Reason.model_validate(r)) for r in reasons)


def _verdict_text(verdict: dict[str, Any] | None) -> str:
    if verdict is None:
        return ""
    return "fraud" if verdict["is_fraud"] == 1 else "genuine"


def queue_figures_text(answer: dict[str, Any]) -> str:
    """The figures line of an :meth:`AlertDesk.queue` answer."""
    f = answer["figures"]
    day = answer["date"] or "no scored transactions yet"
    return (
        f"**{day}**: alerts {f['alerts']} · reviewed {f['reviewed']} · precision {_fmt(f['precision'])} · "
        f"backlog {f['backlog']} (capacity k = {f['capacity']})"
    )


def alerts_table(alerts: list[dict[str, Any]]) -> pd.DataFrame:
    """The queue as a table: rank, card, transaction, amount, score, reasons, verdict."""
    return pd.DataFrame(
        [
            {
                "rank": a["rank"],
                "card": a["customer_id"],
                "transaction_id": a["transaction_id"],
                "amount": round(a["amount"], 2),
                "score": round(a["score"], 4),
                "reasons": _reasons_text(a["reasons"]),
                "verdict": _verdict_text(a["verdict"]),
            }
            for a in alerts
        ],
        columns=ALERT_COLUMNS,
    )


def alert_detail(alert: dict[str, Any] | None) -> tuple[str, pd.DataFrame]:
    """The selected alert in words and its card's recent transactions."""
    if alert is None:
        return "_Select an alert in the table._", pd.DataFrame(columns=RECENT_COLUMNS)
    lines = [
        f"### #{alert['rank']} card {alert['customer_id']}: score {alert['score']:.3f}",
        f"Transaction `{alert['transaction_id']}` at {alert['tx_datetime'].isoformat()} on terminal "
        f"`{alert['terminal_id']}`, amount {alert['amount']:.2f} (model v{alert['model_version']}).",
        "",
        "Reasons (feature = value, push on the log-odds):",
        *(f"- `{_reason_text(Reason.model_validate(r))}`" for r in alert["reasons"]),
    ]
    verdict = alert["verdict"]
    if verdict is not None:
        who = f" by {verdict['reviewer']}" if verdict["reviewer"] else ""
        note = f": {verdict['note']}" if verdict["note"] else ""
        lines += ["", f"**Reviewed: {_verdict_text(verdict)}**{who} at {verdict['label_time'].isoformat()}{note}"]
    recent = pd.DataFrame(
        [
            {
                **r,
                "tx_datetime": r["tx_datetime"].isoformat(),
                "amount": round(r["amount"], 2),
                "score": round(r["score"], 4),
            }
            for r in alert["recent"]
        ],
        columns=RECENT_COLUMNS,
    )
    return "\n".join(lines), recent


def parse_day(value: Any) -> date | None:
    """The date picker's value (``YYYY-MM-DD...`` text, a datetime or a timestamp) as a date; None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).date()
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise user_error(f"{value!r} is not a date (YYYY-MM-DD)", "Invalid date") from None


# --- the app ---------------------------------------------------------------------------------------------


#: What the example buttons are called, by the kind of example the bundle carries (flows/packaging.py).
EXAMPLE_LABELS = {"recent": "Recent transaction", "genuine": "Typical genuine", "fraud": "Known fraud pattern"}
_CANONICAL_LABELS = {"tx_datetime": "tx_datetime (ISO 8601; no zone = UTC)"}


@dataclass(frozen=True)
class ScoreForm:
    """The Score tab's inputs: the request's fields (name, whether a number), the prefill and examples.

    ``own_layout``: the fields are a dataset profile's columns (service/profiled.py), scored through
    the same mapping as the API's; otherwise the product's :class:`TransactionIn`.
    """

    fields: tuple[tuple[str, bool], ...]
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    own_layout: bool = False

    @classmethod
    def of(cls, request: type[BaseModel], numbers: frozenset[str], examples: dict[str, dict[str, Any]]) -> ScoreForm:
        """The form of a request model (fields by their aliases) with the served model's examples."""
        names = [f.alias or name for name, f in request.model_fields.items()]
        return cls(tuple((n, n in numbers) for n in names), examples, own_layout=request is not TransactionIn)

    @property
    def names(self) -> list[str]:
        """Field names in form order."""
        return [name for name, _ in self.fields]

    def placeholder(self) -> dict[str, Any]:
        """What the page itself carries: no served data (a made-up card for the canonical form, else empty)."""
        if self.own_layout:
            return {}
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        return {"transaction_id": "ui-0001", "tx_datetime": now, "customer_id": "42", "terminal_id": "7", "amount": 125}

    def example(self, kind: str) -> list[Any]:
        """The form's values for one of the served data's examples (``recent`` under the id ``ui-0001``)."""
        values = dict(self.examples[kind])
        if kind == "recent" and "transaction_id" in values:
            values["transaction_id"] = "ui-0001"
        return [values.get(name) for name in self.names]


CANONICAL_FORM = ScoreForm.of(TransactionIn, frozenset({"amount"}), {})


def build_ui(
    get_scorer: Callable[[], RecordingScorer],
    get_desk: Callable[[], AlertDesk] | None = None,
    form: ScoreForm = CANONICAL_FORM,
) -> gr.Blocks:
    """The Blocks app; ``get_scorer`` returns the service's recording scorer at call time.

    With ``get_desk`` (the service's :class:`AlertDesk` at call time) the app has the Alerts tab.
    ``form``: the Score tab's fields, prefill and examples (the served model's request layout).
    """

    def _score(record: dict[str, Any]) -> ScoreResponse:
        if form.own_layout:  # the profile's layout: the API's own mapping and checks, a batch of one
            batch = get_scorer().score_batch([record])
            if batch.errors:
                reason = batch.errors[0]["reason"]
                title = "Transaction id already used" if "already scored" in reason else "Invalid transaction"
                raise user_error(reason, title)
            return ScoreResponse.model_validate(batch.results[0])
        try:
            tx = TransactionIn.model_validate(record)
        except ValidationError as exc:
            raise user_error(describe_validation_error(exc), "Invalid transaction") from exc
        try:
            return get_scorer().score(tx)
        except TransactionConflict as exc:
            raise user_error(str(exc), "Transaction id already used") from None

    def score_one(*values: Any) -> tuple[str, pd.DataFrame, dict[str, Any]]:
        """Score one transaction: decision line, reasons chart, JSON response."""
        record = {
            name: None if (value == "" and form.own_layout) else value
            for name, value in zip(form.names, values, strict=True)
        }
        result = _score(record)
        verdict = "ALERT" if result.decision == "alert" else "approve"
        summary = (
            f"### {verdict}: fraud probability {result.fraud_probability:.3f} "
            f"(threshold {result.threshold:.3f}, model v{result.model_version})\n\n"
            "Reasons (feature = value, push on the log-odds): "
            + "; ".join(f"`{_reason_text(r)}`" for r in result.reasons)
        )
        reasons = pd.DataFrame(
            [
                {
                    "feature": r.feature,
                    "value": r.value,
                    "contribution": r.contribution,
                    "direction": "towards fraud" if r.contribution >= 0 else "away from fraud",
                }
                for r in result.reasons
            ],
            columns=REASON_COLUMNS,
        )
        return summary, reasons, result.model_dump(mode="json")

    def score_file(path: str | None) -> tuple[str, pd.DataFrame, pd.DataFrame, str]:
        """Score an uploaded file: counts, results, rejected rows, path of the results CSV."""
        if not path:
            raise user_error(f"upload a CSV or Parquet file with the columns {', '.join(batch_columns)}", "No file")
        try:
            upload = read_upload(Path(path), MAX_BATCH_ROWS, Path(path).name, *get_scorer().scorer.upload_columns)
        except UploadError as exc:
            raise user_error(str(exc), "Unreadable file") from None
        extra = upload.ignored_columns
        batch = get_scorer().score_batch(upload.records, upload.unreadable).to_model()
        results, rejected, download = batch_tables(batch)
        counts = f"**received {batch.received}** = scored {batch.scored} + rejected {batch.rejected}"
        if extra:
            counts += f" (ignored column(s): {', '.join(extra)})"
        return counts, results, rejected, write_download(download, Path(path).name)

    def model_card() -> tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """The model card: summary, metrics vs anchors, PR curve, features, raw JSON."""
        scorer = get_scorer().scorer
        card, state_size = scorer.card, scorer.state_size()
        curve = pr_curve_frame(card)
        features = pd.DataFrame({"feature": card.feature_names})
        features.insert(0, "#", range(1, len(features) + 1))
        raw = {**card.to_dict(), "online_state_transactions": state_size}
        return card_summary(card, not curve.empty, state_size), comparison_table(card), curve, features, raw

    empty_detail = alert_detail(None)

    def load_alerts(day: Any) -> tuple[str, pd.DataFrame, list[dict[str, Any]], str, pd.DataFrame, str | None]:
        """The day's queue (default the newest scored day): figures, table, and the detail cleared."""
        assert get_desk is not None
        answer = get_desk().queue(parse_day(day))
        return queue_figures_text(answer), alerts_table(answer["alerts"]), answer["alerts"], *empty_detail, None

    def select_alert(alerts: list[dict[str, Any]], evt: gr.SelectData) -> tuple[str, pd.DataFrame, str | None]:
        """Show the clicked row's alert: reasons, verdict, the card's recent transactions."""
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(alerts):
            return *empty_detail, None
        return *alert_detail(alerts[row]), alerts[row]["transaction_id"]

    def mark(
        is_fraud: int, selected: str | None, note: str, reviewer: str, day: Any
    ) -> tuple[str, str, pd.DataFrame, list[dict[str, Any]], str, pd.DataFrame, str | None]:
        """Record the analyst's verdict on the selected alert, then show the queue again (the alert kept selected)."""
        if not selected:
            raise user_error("select an alert in the table first", "No alert selected")
        assert get_desk is not None
        desk = get_desk()
        try:
            verdict = Verdict(
                transaction_id=selected, is_fraud=is_fraud, reviewer=reviewer.strip() or None, note=note.strip() or None
            )
        except ValidationError as exc:
            raise user_error(describe_validation_error(exc), "Invalid verdict") from exc
        answer = desk.review([verdict])
        if answer["rejected"]:
            raise user_error(answer["errors"][0]["reason"], "Verdict refused")
        status = (
            f"Recorded: `{selected}` is **{'fraud' if is_fraud else 'genuine'}** "
            f"(analyst label at {answer['label_time'].isoformat()})."
        )
        queue = desk.queue(parse_day(day))
        chosen = next((a for a in queue["alerts"] if a["transaction_id"] == selected), None)
        detail = alert_detail(chosen)
        return status, queue_figures_text(queue), alerts_table(queue["alerts"]), queue["alerts"], *detail, selected

    def mark_fraud(*args: Any) -> tuple[Any, ...]:
        return mark(1, *args)

    def mark_genuine(*args: Any) -> tuple[Any, ...]:
        return mark(0, *args)

    batch_columns = list(BATCH_COLUMNS) if not form.own_layout else form.names

    def served_example(kind: str) -> list[Any]:
        """An example from the served data for the form: cards and their history need the API key."""
        if LiveSettings.ui_demo():
            raise user_error("examples from the served data need the API key: the demo UI is read-only", "Not here")
        return form.example(kind)

    def fill_on_load() -> list[Any]:
        """The served data's newest transaction in the form, once the page is open (the key was checked)."""
        if LiveSettings.ui_demo() or "recent" not in form.examples:
            return [gr.skip()] * len(form.names)
        return form.example("recent")

    first = form.placeholder()  # the page's own config never holds served data (FRAUDOPS_UI_DEMO opens it)
    with gr.Blocks(title="fraudops") as blocks:
        gr.Markdown("# fraudops: card fraud scoring")
        with gr.Tab("Score a transaction"):
            inputs: list[Any] = []
            per_row = 3 if not form.own_layout else 4
            for start in range(0, len(form.fields), per_row):
                with gr.Row():
                    for name, number in form.fields[start : start + per_row]:
                        label = _CANONICAL_LABELS.get(name, name) if not form.own_layout else name
                        box = gr.Number if number else gr.Textbox
                        inputs.append(box(label=label, value=first.get(name)))
            if form.examples:
                gr.Markdown("Examples from the served data (new ids; times as they were):")
                with gr.Row():
                    for kind in (k for k in EXAMPLE_LABELS if k in form.examples):
                        button = gr.Button(EXAMPLE_LABELS[kind], size="sm")
                        button.click(partial(served_example, kind), None, inputs, api_visibility="private")
                blocks.load(fill_on_load, None, inputs, api_visibility="private")
            go = gr.Button("Score", variant="primary")
            summary = gr.Markdown()
            chart = gr.BarPlot(
                x="feature",
                y="contribution",
                color="direction",
                color_map={"towards fraud": "#d62728", "away from fraud": "#2ca02c"},
                sort="-y",
                title="Reasons: each feature's push on the fraud log-odds",
                y_title="contribution (log-odds)",
                tooltip=["feature", "value", "contribution"],
            )
            raw = gr.JSON(label="response")
            go.click(score_one, inputs, [summary, chart, raw], api_name="score_one")
        with gr.Tab("Batch"):
            gr.Markdown(
                f"CSV or Parquet with the columns `{'`, `'.join(batch_columns)}` (other columns are ignored), "
                f"at most {MAX_BATCH_ROWS:,} rows. Rows that fail validation are listed by their 0-based index."
            )
            upload = gr.File(label="transactions (CSV or Parquet)", file_types=[".csv", ".parquet"])
            run = gr.Button("Score file", variant="primary")
            counts = gr.Markdown()
            results = gr.Dataframe(label="scored", headers=RESULT_COLUMNS, interactive=False)
            rejected = gr.Dataframe(label="rejected", headers=REJECTED_COLUMNS, interactive=False)
            download = gr.File(label="results CSV (every row, in file order)", interactive=False)
            run.click(score_file, [upload], [counts, results, rejected, download], api_name="score_file")
        with gr.Tab("Model card"):
            card_text = gr.Markdown()
            comparison = gr.Dataframe(label="test metrics vs the published anchors", interactive=False)
            pr_plot = gr.LinePlot(
                x="recall",
                y="precision",
                title="Precision-recall on the test window",
                x_lim=[0, 1],
                y_lim=[0, 1],
                tooltip=PR_COLUMNS,
            )
            features = gr.Dataframe(label="features (model input order)", interactive=False)
            with gr.Accordion("raw model card", open=False):
                card_json = gr.JSON(label="model card")
            refresh = gr.Button("Refresh")
            outputs = [card_text, comparison, pr_plot, features, card_json]
            refresh.click(model_card, [], outputs, api_name="model_card")
            blocks.load(model_card, [], outputs, api_visibility="private")
        if get_desk is not None:
            with gr.Tab("Alerts"):
                gr.Markdown(
                    "The day's alerted cards, one per card (its highest-scored transaction), ranked by score, at "
                    "most the daily capacity k. Select an alert, then mark it **Fraud** or **Genuine**: the verdict "
                    "is a label event at once and reaches the online state."
                )
                with gr.Row():
                    day = gr.DateTime(
                        label="day (UTC; empty = the newest scored day)", include_time=False, type="string"
                    )
                    show = gr.Button("Show alerts", variant="primary")
                figures = gr.Markdown()
                queue = gr.Dataframe(label="alerts", headers=ALERT_COLUMNS, interactive=False)
                alerts_state = gr.State([])
                selected = gr.State(None)
                with gr.Row():
                    with gr.Column(scale=2):
                        detail = gr.Markdown(empty_detail[0])
                        recent = gr.Dataframe(
                            label="the card's recent transactions", headers=RECENT_COLUMNS, interactive=False
                        )
                    with gr.Column(scale=1):
                        reviewer = gr.Textbox(label="reviewer (optional)")
                        note = gr.Textbox(label="note (optional)", lines=2)
                        with gr.Row():
                            fraud = gr.Button("Fraud", variant="stop")
                            genuine = gr.Button("Genuine", variant="secondary")
                        verdict_status = gr.Markdown()
                listed = [figures, queue, alerts_state, detail, recent, selected]
                show.click(load_alerts, [day], listed, api_name="alerts")
                day.change(load_alerts, [day], listed, api_visibility="private")
                queue.select(select_alert, [alerts_state], [detail, recent, selected], api_visibility="private")
                marked = [verdict_status, *listed]
                verdict_inputs = [selected, note, reviewer, day]
                fraud.click(mark_fraud, verdict_inputs, marked, api_name="mark_fraud")
                genuine.click(mark_genuine, verdict_inputs, marked, api_name="mark_genuine")
    return blocks
