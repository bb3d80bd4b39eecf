"""Static checks of prefect.yaml, docker-compose.yml and bentofile.yaml (no Docker engine here)."""

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def test_prefect_deployments_point_at_real_flows_with_valid_parameters() -> None:
    from prefect import Flow

    config = load("prefect.yaml")
    deployments = {d["name"]: d for d in config["deployments"]}
    assert "demo-pipeline" in deployments and deployments["demo-pipeline"]["schedules"]
    for name, deployment in deployments.items():
        module_path, attr = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attr)
        assert isinstance(flow, Flow), name
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted, name
        assert deployment["work_pool"]["name"] == "fraudops-process"


def test_compose_services_have_health_checks_and_loopback_ports() -> None:
    compose = load("docker-compose.yml")
    services = compose["services"]
    assert {"postgres", "prefect-server", "prefect-worker", "mlflow", "fraud-service"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
            else:
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        for dependency in service.get("depends_on", {}):
            assert dependency in services


@pytest.mark.parametrize("name", ["bentofile.yaml"])
def test_bentofile_service_and_includes_exist(name: str) -> None:
    config = load(name)
    module, cls = config["service"].split(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).exists()
    assert f"class {cls}" in (ROOT / (module.replace(".", "/") + ".py")).read_text()
    for pattern in config["include"]:
        assert list(ROOT.glob(pattern)), pattern
