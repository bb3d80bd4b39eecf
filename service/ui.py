"""Gradio front end: score one transaction, score a CSV batch, read the model card."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import gradio as gr
import pandas as pd
from pydantic import ValidationError

from features.contract import TransactionIn
from service.scoring import Scorer, describe_validation_error


def build_ui(get_scorer: Callable[[], Scorer]) -> gr.Blocks:
    """The Blocks app; ``get_scorer`` returns the service's loaded scorer at call time."""

    def score_one(
        tid: str, when: str, customer: str, terminal: str, amount: float
    ) -> tuple[str, pd.DataFrame, dict[str, Any]]:
        try:
            tx = TransactionIn(
                transaction_id=tid, tx_datetime=when, customer_id=customer, terminal_id=terminal, amount=amount
            )
        except ValidationError as exc:
            raise gr.Error(describe_validation_error(exc)) from exc
        result = get_scorer().score(tx)
        verdict = "ALERT" if result.decision == "alert" else "approve"
        summary = (
            f"### {verdict}: fraud probability {result.fraud_probability:.3f} "
            f"(threshold {result.threshold:.3f}, model v{result.model_version})"
        )
        reasons = pd.DataFrame([r.model_dump() for r in result.reasons])
        return summary, reasons, result.model_dump(mode="json")

    def score_file(path: str | None) -> tuple[pd.DataFrame, str | None, str]:
        if not path:
            raise gr.Error("upload a CSV with transaction_id, tx_datetime, customer_id, terminal_id, amount")
        try:
            records = pd.read_csv(path, dtype=str).to_dict(orient="records")
        except Exception as exc:
            raise gr.Error(f"cannot read the file as CSV: {exc}") from exc
        batch = get_scorer().score_batch(records)
        table = pd.DataFrame(
            [{k: v for k, v in r.model_dump().items() if k != "reasons"} for r in batch.results]
            + [
                {"transaction_id": e.transaction_id, "decision": "rejected", "error": f"row {e.index}: {e.reason}"}
                for e in batch.errors
            ]
        )
        with tempfile.NamedTemporaryFile("w", suffix="-scored.csv", delete=False) as out:
            table.to_csv(out, index=False)
        counts = f"received {batch.received}: scored {batch.scored}, rejected {batch.rejected}"
        return table, out.name, counts

    def card() -> tuple[str, dict[str, Any]]:
        data = get_scorer().model_card()
        m = data.get("metrics", {})
        split = data.get("split", {})
        text = (
            f"### Model v{data.get('model_version')} (MLflow run `{data.get('run_id', '?')}`)\n\n"
            f"Test window {split.get('test_start')} .. {split.get('test_end')}: "
            f"AUC {m.get('test_auc', float('nan')):.3f}, AP {m.get('test_ap', float('nan')):.3f}, "
            f"precision {m.get('test_precision', float('nan')):.3f}, recall {m.get('test_recall', float('nan')):.3f} "
            f"at threshold {data.get('threshold', float('nan')):.3f}. Trained on {split.get('train_start')} .. "
            f"{split.get('train_end')} with a {data.get('feature_spec', {}).get('label_delay_days')}-day label delay."
        )
        return text, data

    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    with gr.Blocks(title="fraudops") as blocks:
        gr.Markdown("# fraudops: card fraud scoring")
        with gr.Tab("Score a transaction"):
            with gr.Row():
                tid = gr.Textbox(label="transaction_id", value="ui-0001")
                when = gr.Textbox(label="tx_datetime (ISO 8601, UTC)", value=now)
            with gr.Row():
                customer = gr.Textbox(label="customer_id", value="42")
                terminal = gr.Textbox(label="terminal_id", value="7")
                amount = gr.Number(label="amount", value=125.0)
            go = gr.Button("Score", variant="primary")
            summary = gr.Markdown()
            chart = gr.BarPlot(x="feature", y="contribution", title="Top reasons (log-odds contribution)")
            raw = gr.JSON(label="response")
            go.click(score_one, [tid, when, customer, terminal, amount], [summary, chart, raw])
        with gr.Tab("Batch"):
            upload = gr.File(label="CSV of transactions", file_types=[".csv"])
            run = gr.Button("Score file", variant="primary")
            counts = gr.Markdown()
            table = gr.Dataframe(label="results")
            download = gr.File(label="download results")
            run.click(score_file, [upload], [table, download, counts])
        with gr.Tab("Model card"):
            card_text = gr.Markdown()
            card_json = gr.JSON(label="model card")
            refresh = gr.Button("Refresh")
            refresh.click(card, [], [card_text, card_json])
            blocks.load(card, [], [card_text, card_json])
    return blocks
