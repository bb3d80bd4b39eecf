"""Static checks of prefect.yaml, docker-compose.yml and bentofile.yaml (no Docker engine here)."""

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


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
        flow.validate_parameters(deployment.get("parameters", {}))  # nested policy forms too (pydantic)
        assert deployment["work_pool"]["name"] == "fraudops-process"


def test_compose_services_have_health_checks_and_loopback_ports() -> None:
    compose = load("docker-compose.yml")
    services = compose["services"]
    expected = {"postgres", "prefect-server", "prefect-worker", "mlflow", "fraud-service", "prometheus", "grafana"}
    assert expected <= set(services)
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


def dashboard_metrics() -> set[str]:
    """Metric names the provisioned Grafana dashboard queries."""
    import json
    import re

    dashboard = json.loads((ROOT / "docker/grafana/dashboards/fraudops.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {m for e in exprs for m in re.findall(r"\b([a-z_]+)(?:\{|\[)", e)}
    return {n.removesuffix("_bucket").removesuffix("_total") for n in names} - {"rate", "increase", "sum"}


def test_prometheus_scrapes_the_service_and_grafana_is_provisioned() -> None:
    import json

    compose = load("docker-compose.yml")["services"]
    prometheus = load("docker/prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["fraud-service:3000"]
    assert "3000" in compose["fraud-service"]["ports"][0]
    (source,) = load("docker/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    provider = load("docker/grafana/provisioning/dashboards/fraudops.yml")["providers"][0]
    mounted = {v.split(":")[1] for v in compose["grafana"]["volumes"]}
    assert provider["options"]["path"] in mounted
    titles = [
        p["title"].lower() for p in json.loads((ROOT / "docker/grafana/dashboards/fraudops.json").read_text())["panels"]
    ]
    for needed in ("request rate", "latency percentiles", "errors", "alert rate", "score distribution"):
        assert any(needed in t for t in titles), needed
    assert dashboard_metrics() == {
        "bentoml_service_request",
        "bentoml_service_request_duration_seconds",
        "fraud_decisions",
        "fraud_score",
    }


def _imports_of(path: Path) -> set[str]:
    """Project modules ``path`` imports at module level or in functions (ast, no import side effects)."""
    import ast

    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in PROJECT_PACKAGES}


PROJECT_PACKAGES = {"config", "data", "features", "validation", "monitoring", "model", "flows", "service"}
# Imported only inside functions the service never calls (the threshold policy's cost model, for training).
SERVICE_NEVER_CALLS = {"model.metrics"}


def test_bentofile_includes_exactly_what_the_service_imports() -> None:
    import pathspec  # what `bentoml build` matches the include list with (a BentoML dependency)

    patterns = load("bentofile.yaml")["include"]
    spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    needed: set[Path] = set()
    todo = [Path("service/service.py")]
    while todo:
        module = todo.pop()
        if module in needed:
            continue
        needed.add(module)
        for name in _imports_of(ROOT / module) - SERVICE_NEVER_CALLS:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # every parent package's __init__ runs on import
                package = Path(*parts[:depth]) / "__init__.py"
                if (ROOT / package).exists():
                    todo.append(package)
            file = Path(*parts).with_suffix(".py")
            todo.append(file if (ROOT / file).exists() else Path(*parts) / "__init__.py")
    missing = sorted(str(m) for m in needed if not spec.match_file(str(m)))
    assert not missing, f"bentofile.yaml does not ship {missing}"
    assert not spec.match_file("flows/pipeline.py") and not spec.match_file("validation/raw.py")


def test_readme_documents_every_setting() -> None:
    from config.settings import ENV_PREFIX, Settings

    readme = (ROOT / "README.md").read_text()
    missing = [
        f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in readme
    ]
    assert not missing, f"README's configuration table lacks {missing}"


def test_compose_keeps_state_in_named_volumes_and_shares_one_label_store() -> None:
    compose = load("docker-compose.yml")
    service, worker = compose["services"]["fraud-service"], compose["services"]["prefect-worker"]
    named = set(compose["volumes"])

    def mounts(svc: dict[str, Any]) -> dict[str, str]:
        return {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}

    env = service["environment"]
    assert env["FRAUDOPS_API_KEY"].startswith("${FRAUDOPS_API_KEY:?")  # from the environment, required
    for variable in ("FRAUDOPS_STATE_DIR", "FRAUDOPS_MONITOR_DIR", "FRAUDOPS_FEEDBACK_DB"):
        path = env[variable]
        mount = next(m for m in mounts(service) if path.startswith(m + "/"))
        assert mounts(service)[mount] in named, variable  # survives the container
    label_db = env["FRAUDOPS_FEEDBACK_DB"]
    assert worker["environment"]["FRAUDOPS_FEEDBACK_DB"] == label_db  # the monitor reads what the service wrote
    shared = {mounts(service)[m] for m in mounts(service) if label_db.startswith(m + "/")}
    assert shared == {mounts(worker)[m] for m in mounts(worker) if label_db.startswith(m + "/")}
    assert env["FRAUDOPS_ID_HASH_SALT"] == worker["environment"]["FRAUDOPS_ID_HASH_SALT"]
    assert mounts(worker)["/data/fraudops"] in named  # the lake
