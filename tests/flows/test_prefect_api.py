"""The Prefect server API the CLI and UI rely on (guards the FastAPI pin in pyproject.toml)."""

import pytest


@pytest.mark.slow
def test_server_lists_work_pools_deployments_and_runs(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="fraudops-api-check", type="process"))
        # These send `"limit": null`; with Prefect 3.9.1, FastAPI 0.151-0.165 answer 422 to every one of them.
        assert "fraudops-api-check" in {pool.name for pool in client.read_work_pools()}
        assert isinstance(client.read_deployments(), list)
        assert isinstance(client.read_flow_runs(), list)
        assert client.read_workers_for_work_pool("fraudops-api-check") == []
