"""The OpenAPI document as the service really behaves: what BentoML generates, completed and corrected.

BentoML documents 200, 400, 404 and 500 for every operation, with a ``detail`` string the service never
sends. The gateway and the routes also answer 401 (no API key), 409 (a reused transaction id, a task
not finished yet), 411/413 (body limits), 422 (empty or oversized batches, unreadable uploads) and 503
(model loading), ``GET /model`` exists beside BentoML's ``POST /model``, request bodies are required,
and ``/score_job/cancel`` is left out (BentoML's local server cannot cancel; the gateway answers 404).
:func:`complete_openapi` adds all of that to the generated document, which the gateway serves at
``/docs.json``. ``tests/service/test_schemathesis.py`` runs schemathesis against a served Bento with
every check, so the document cannot drift from the behaviour unnoticed.
"""

from __future__ import annotations

import copy
from typing import Any

from service.gateway import is_public
from service.scoring import PARQUET_ERRORS_KEY, PARQUET_MEDIA_TYPE

ERROR = "Error"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR}"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": ERROR,
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "What went wrong"},
        "detail": {
            "title": "Per-field problems (validation errors)",
            "type": "array",
            "items": {"type": "object"},
        },
    },
}
#: BentoML's error schemas, replaced by :data:`ERROR_SCHEMA` (their ``detail`` is documented as a string).
BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")

SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}
#: Either credential when FRAUDOPS_API_KEY is set; none when it is not (the empty requirement).
SECURITY = [{"ApiKeyHeader": []}, {"Bearer": []}, {}]

TASK_STATUSES = ["pending", "in_progress", "completed", "failed", "canceled"]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


#: Extra answers per (method, path), beyond 200/400/404/500 and the 401 every protected operation has.
EXTRA_RESPONSES: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/score"): {
        "409": "The transaction id was already scored with another customer, terminal, time or amount.",
        "411": "Chunked body without Content-Length.",
        "413": "Body over FRAUDOPS_MAX_BODY_MB.",
    },
    ("post", "/score_batch"): {
        "411": "Chunked body without Content-Length.",
        "413": "Body over FRAUDOPS_MAX_BODY_MB.",
        "422": "No transactions, or more than 10,000.",
    },
    ("post", "/feedback"): {"411": "Chunked body without Content-Length.", "413": "Body over FRAUDOPS_MAX_BODY_MB."},
    ("post", "/score_file"): {
        "411": "Chunked body without Content-Length.",
        "413": "Body over FRAUDOPS_MAX_BODY_MB, or more rows than FRAUDOPS_MAX_FILE_ROWS (use /score_job).",
        "422": "The file is not a readable CSV or Parquet file of transactions.",
    },
    ("post", "/score_job"): {
        "411": "Chunked body without Content-Length.",
        "413": "Body over FRAUDOPS_MAX_BODY_MB, or more rows than FRAUDOPS_MAX_JOB_ROWS.",
        "422": "The file is not a readable CSV or Parquet file of transactions.",
    },
    ("post", "/score_job/submit"): {
        "411": "Chunked body without Content-Length.",
        "413": "Body over FRAUDOPS_MAX_BODY_MB.",
    },
    ("get", "/score_job/get"): {
        "409": "The task has not finished yet (see /score_job/status).",
        "413": "The task failed: its file has more rows than FRAUDOPS_MAX_JOB_ROWS.",
        "422": "The task failed: its file is not a readable CSV or Parquet file of transactions.",
    },
    ("post", "/score_job/retry"): {"409": "The task has not finished yet; only a finished task is retried."},
    ("post", "/model"): {"503": "The model is still loading."},
    ("get", "/alerts"): {"400": "date is not a YYYY-MM-DD date, or limit is not a positive integer."},
    ("post", "/alerts/verdicts"): {"413": "Body over FRAUDOPS_MAX_BODY_MB."},
}
#: FastAPI's answer to a bad query parameter, which the service gives as a 400 ``Error`` (service.service).
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def complete_openapi(generated: dict[str, Any], summary_schema: dict[str, Any]) -> dict[str, Any]:
    """The generated document with every status the service answers, one error schema, security and ``GET /model``.

    ``summary_schema`` is the JSON schema of the ``GET /model`` answer.
    """
    doc = copy.deepcopy(generated)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR] = ERROR_SCHEMA
    for name in BENTOML_ERRORS:
        schemas.pop(name, None)
    schemas["ModelSummary"] = summary_schema
    if "TaskStatusResponse" in schemas:  # BentoML documents statuses its result store never writes
        schemas["TaskStatusResponse"]["properties"]["status"]["enum"] = TASK_STATUSES
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    paths = doc.setdefault("paths", {})
    model = paths.setdefault("/model", {})
    model["get"] = {
        "tags": list(model.get("post", {}).get("tags", [])),
        "description": "The model card summary: version, metrics, data window, threshold, features.",
        "operationId": "fraud_service__model_get",
        "responses": {
            "200": {
                "description": "The model card summary.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelSummary"}}},
            },
            "503": _error("The model is still loading."),
        },
    }
    # /score_file and /score_job answer Parquet when the request's Accept asks for it (service.scoring.ScoredBatch).
    for path, method in (("/score_file", "post"), ("/score_job/get", "get")):
        ok = paths.get(path, {}).get(method, {}).get("responses", {}).get("200")
        if ok is not None:
            ok.setdefault("content", {})[PARQUET_MEDIA_TYPE] = {"schema": {"type": "string", "format": "binary"}}
            ok["description"] = (
                f"{ok.get('description', 'Successful Response')}. With Accept: {PARQUET_MEDIA_TYPE}, a Parquet file "
                f"of the results (reasons a list of structs); the rejected rows are in its key-value metadata "
                f"{PARQUET_ERRORS_KEY!r} (JSON) and the counts in the X-Rows-Received/-Scored/-Rejected headers."
            )
    # The GET routes (FastAPI) answer a bad query with a 400 Error, not FastAPI's 422.
    for operations in paths.values():
        for operation in operations.values():
            if isinstance(operation, dict) and "HTTPValidationError" in str(operation.get("responses", {}).get("422")):
                del operation["responses"]["422"]
    for name in FASTAPI_VALIDATION:
        schemas.pop(name, None)
    # BentoML's local server marks a task cancelled without stopping it; the gateway answers 404 there.
    paths.pop("/score_job/cancel", None)
    for route in ("/score_job/submit", "/score_job/retry"):  # answered with the task id and status only
        operation = paths.get(route, {}).get("post")
        if operation is not None:
            operation["responses"]["200"] = {
                "description": "The task, submitted.",
                "content": {"application/json": {"schema": _task_submitted_schema()}},
            }
    for path, operations in paths.items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if "requestBody" in operation and path != "/model":  # POST /model takes no input
                operation["requestBody"]["required"] = True  # an empty body is a 400
            responses = operation["responses"]
            for status, response in list(responses.items()):
                if str(status)[0] in "45":
                    responses[status] = _error(response.get("description", "Error"))
            for status, description in EXTRA_RESPONSES.get((method, path), {}).items():
                responses[status] = _error(description)
            if not is_public(method.upper(), path):  # the gateway's allowlist decides
                responses["401"] = _error("FRAUDOPS_API_KEY is set and the request has no valid key.")
                operation["security"] = SECURITY
            operation["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
    return doc


def _task_submitted_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "TaskSubmitted",
        "required": ["task_id", "status"],
        "properties": {
            "task_id": {"type": "string", "title": "Task Id"},
            "status": {"type": "string", "enum": TASK_STATUSES, "title": "Status"},
        },
    }
