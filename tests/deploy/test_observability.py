"""deploy/prometheus.yml and deploy/otel-collector.yaml: well-formed, internally consistent,
and pointed at the compose services and ports that really serve the data."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings import Settings
from tests.deploy.deploy_files import COMPOSE_FILES, DEPLOY, interpolate, load_yaml

PIPELINE_PARTS = ("receivers", "processors", "exporters")


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return load_yaml(DEPLOY / "prometheus.yml")


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return load_yaml(DEPLOY / "otel-collector.yaml")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILES[0])["services"]


def _jobs(prometheus: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert len(jobs) == len(prometheus["scrape_configs"]), "duplicate job_name"
    return jobs


def _targets(job: dict[str, Any]) -> list[tuple[str, int]]:
    return [(host, int(port)) for config in job["static_configs"]
            for host, port in (target.rsplit(":", 1) for target in config["targets"])]


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_prometheus_scrapes_the_gateway_metrics_endpoint(
        prometheus: dict[str, Any], services: dict[str, Any]) -> None:
    job = _jobs(prometheus)["prefixgate"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    env = {k: interpolate(str(v), {}) for k, v in services["gateway"]["environment"].items()}
    port = Settings.from_env(env).port
    assert _targets(job) == [("gateway", port)]


def test_prometheus_scrapes_the_collector_exporter(
        prometheus: dict[str, Any], collector: dict[str, Any], services: dict[str, Any]) -> None:
    targets = _targets(_jobs(prometheus)["otel-collector"])
    exporter_port = _port(collector["exporters"]["prometheus"]["endpoint"])
    assert targets == [("otel-collector", exporter_port)]
    assert all(host in services for host, _ in targets)


def test_prometheus_intervals_are_durations(prometheus: dict[str, Any]) -> None:
    for key in ("scrape_interval", "evaluation_interval"):
        value = prometheus["global"][key]
        assert value[:-1].isdigit() and value[-1] in "smh", f"{key}={value!r}"


def test_collector_pipelines_use_only_defined_components(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    used: dict[str, set[str]] = {part: set() for part in PIPELINE_PARTS}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] and pipeline["exporters"], f"{name} is not wired"
        for part in PIPELINE_PARTS:
            for component in pipeline.get(part, []):
                assert component in collector[part], f"{name}: {part} {component} undefined"
                used[part].add(component)
    for part in PIPELINE_PARTS:
        assert set(collector[part]) == used[part], f"unused {part}"
    assert set(collector["service"]["extensions"]) == set(collector["extensions"])


def test_memory_limiter_runs_first(collector: dict[str, Any]) -> None:
    for pipeline in collector["service"]["pipelines"].values():
        assert pipeline["processors"][0] == "memory_limiter"


def test_collector_receives_otlp_on_the_published_ports(
        collector: dict[str, Any], services: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    ports = {_port(protocols[p]["endpoint"]) for p in ("grpc", "http")}
    published = {int(str(m).rsplit(":", 1)[1]) for m in services["otel-collector"]["ports"]}
    assert ports == published == {4317, 4318}
    config_mount = services["otel-collector"]["volumes"][0].split(":")[1]
    assert services["otel-collector"]["command"] == [f"--config={config_mount}"]
