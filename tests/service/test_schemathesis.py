"""Schemathesis against the service's own OpenAPI schema (BentoML's /docs.json, in process): no 5xx.

Each operation gets requests generated from the schema, valid ones (positive mode) and ones the
schema forbids (negative mode), and must never answer 5xx. The schema is used as BentoML serves
it (valid OpenAPI 3.0.2, no adaptation needed). Left out: the task status/result/retry/cancel routes
(they need the id of a submitted task), the /ui mount (not in the schema) and GET /metrics, which
only works under `bentoml serve` (it reads PROMETHEUS_MULTIPROC_DIR, which the server sets; in
process it never answers), and is checked against a served Bento in tests/e2e/test_bento_serve.py.

Two bugs found here (a multipart body that does not parse got 500; the generator's reused
transaction ids with other values got 500) are fixed and pinned in tests/service/test_bad_inputs.py; the
generated requests here are sent unsteered.

Why not ``@schema.parametrize()``: the schema only exists once the session's pipeline has packaged
a model, so it would come from ``schemathesis.pytest.from_fixture``, and that loader fails on
pytest 9 (schemathesis 4.32 sets ``request.node._nodeid``, which pytest 9 no longer has). Each
operation's Hypothesis strategy (``operation.as_strategy``, schemathesis' fuzzing phase; not its
examples and coverage phases) under a plain ``@given`` runs with the same check.
"""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.slow

#: Every operation of the schema but the EXCLUDED paths.
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("POST", "/score"),
    ("POST", "/score_batch"),
    ("POST", "/score_file"),
    ("POST", "/score_job"),
    ("POST", "/score_job/submit"),
    ("POST", "/feedback"),
    ("POST", "/model"),
    ("GET", "/model"),
    ("GET", "/alerts"),
    ("POST", "/alerts/verdicts"),
]
EXCLUDED = {"/score_job/status", "/score_job/get", "/score_job/retry", "/score_job/cancel", "/metrics"}


@pytest.fixture(scope="module")
def api_schema(pipeline_result: dict[str, Any]) -> Iterator[Any]:
    """The schema served by the in-process app with the pipeline's model.

    Schemathesis starts the app's lifespan (the model load) on its first request and keeps it until
    ``shutdown_lifespans``.
    """
    from schemathesis.python.asgi import shutdown_lifespans

    from tests.helpers import service_app

    with service_app(pipeline_result["package"]["model_tag"]) as app:
        config = schemathesis.Config.from_dict({"seed": 20261121})
        yield schemathesis.openapi.from_asgi("/docs.json", app, config=config)
        shutdown_lifespans()


def test_the_operations_under_test_are_all_the_schema_has(api_schema: Any) -> None:
    served = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert {(m, p) for m, p in served if p not in EXCLUDED} == set(OPERATIONS)


def _cases() -> Iterator[Any]:
    for method, path in OPERATIONS:
        yield pytest.param(method, path, GenerationMode.POSITIVE, id=f"{method} {path}-positive")
        if method == "POST" or path == "/alerts":  # the other GET routes take no input: nothing to make invalid
            yield pytest.param(method, path, GenerationMode.NEGATIVE, id=f"{method} {path}-negative")


@pytest.mark.parametrize(("method", "path", "mode"), _cases())
def test_no_generated_request_gets_a_5xx(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    strategy = api_schema[path][method].as_strategy(generation_mode=mode)

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=strategy)
    def no_server_error(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    no_server_error()
