"""deploy/compose.yaml (+ compose.gpu.yaml): the Compose spec schema, then the structure the
stack relies on: services, health checks, start order, and gateway settings that resolve to a
reachable gateway on the compose PostgreSQL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from check_jsonschema.builtin_schemas import get_builtin_schema
from opentelemetry.sdk import environment_variables as otel_env

from gateway.settings import Settings
from tests.deploy.deploy_files import (
    COMPOSE_FILES,
    DEPLOY,
    ROOT,
    interpolate,
    load_yaml,
    project_version,
)
from tests.deploy.gateway_env import DB_UPGRADE, SERVE, command_reads, option_envvars

SERVICES = {"postgres", "migrate", "gateway", "otel-collector", "prometheus"}
# Images run without a health-check tool (distroless): depended on only as service_started.
NO_HEALTHCHECK = {"otel-collector", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILES[0])


@pytest.fixture(scope="module")
def gpu_override() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILES[1])


def _validator() -> jsonschema.protocols.Validator:
    schema = get_builtin_schema("vendor.compose-spec")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, interpolated as with an empty shell environment."""
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of environment"
    return {k: interpolate(str(v), {}) for k, v in env.items()}


def _container_port(service: dict[str, Any]) -> int:
    (mapping,) = service["ports"]
    return int(str(mapping).rsplit(":", 1)[1])


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_matches_the_compose_spec_schema(path: Any) -> None:
    errors = sorted(_validator().iter_errors(load_yaml(path)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    """Control: the schema is strict enough to catch a misspelt key and a bad condition."""
    broken = {**compose, "services": {**compose["services"]}}
    broken["services"]["postgres"] = {**compose["services"]["postgres"], "helthcheck": {}}
    broken["services"]["gateway"] = {**compose["services"]["gateway"],
                                     "depends_on": {"postgres": {"condition": "up"}}}
    assert len(list(_validator().iter_errors(broken))) >= 2


def test_has_the_stack_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_depends_on_targets_exist_and_conditions_hold(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services and target != name
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target]["restart"] == "no", f"{target} must be one-shot"
            else:
                assert condition == "service_started"


def test_start_order_is_acyclic_and_migrations_precede_the_gateway(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        assert name not in stack, f"depends_on cycle: {(*stack, name)}"
        for target in services[name].get("depends_on", {}):
            visit(target, (*stack, name))
        if name not in order:
            order.append(name)

    for name in services:
        visit(name, ())
    assert order.index("postgres") < order.index("migrate") < order.index("gateway")
    gateway_deps = services["gateway"]["depends_on"]
    assert gateway_deps["migrate"]["condition"] == "service_completed_successfully"
    assert gateway_deps["postgres"]["condition"] == "service_healthy"


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name not in NO_HEALTHCHECK:
            test = service["healthcheck"]["test"]
            assert test[0] == "CMD" and len(test) > 1, f"{name}: exec-form healthcheck"


def test_gateway_healthcheck_waits_for_readiness(compose: dict[str, Any]) -> None:
    test = compose["services"]["gateway"]["healthcheck"]["test"]
    assert test[2:] == ["/usr/local/bin/prefixgate-healthcheck", "/readyz"]


def test_postgres_healthcheck_asks_for_the_stack_database(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    env = _environment(postgres)
    test = postgres["healthcheck"]["test"]
    assert test[1] == "pg_isready"
    assert f"--username={env['POSTGRES_USER']}" in test
    assert f"--dbname={env['POSTGRES_DB']}" in test


def test_gateway_and_migrate_build_this_repository(compose: dict[str, Any]) -> None:
    for name in ("gateway", "migrate"):
        service = compose["services"][name]
        context = (DEPLOY / service["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / service["build"]["dockerfile"]).is_file()
        assert service["image"] == f"prefixgate:{project_version()}-cpu"


def test_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    assert tuple(compose["services"]["gateway"]["command"]) == SERVE
    assert tuple(compose["services"]["migrate"]["command"]) == DB_UPGRADE


def test_gateway_env_names_are_read_by_the_gateway(compose: dict[str, Any]) -> None:
    known_otel = {n for n in dir(otel_env) if n.startswith("OTEL_")}
    for name in _environment(compose["services"]["gateway"]):
        if name.startswith("OTEL_"):
            assert name in known_otel, f"{name} is not an OpenTelemetry SDK variable"
        else:
            assert command_reads(SERVE, name), f"`prefixgate serve` does not read {name}"
    for name in _environment(compose["services"]["migrate"]):
        assert command_reads(DB_UPGRADE, name), f"`prefixgate db upgrade` does not read {name}"


def test_gateway_settings_reach_postgres_and_listen_on_the_published_port(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    gateway_env = _environment(services["gateway"])
    settings = Settings.from_env(gateway_env)
    assert settings.host == "0.0.0.0"
    assert settings.port == _container_port(services["gateway"])
    mounts = {v.split(":")[1] for v in services["gateway"]["volumes"]}
    assert str(settings.data_dir) in mounts, "the data dir must be a volume"

    url = urlsplit(settings.resolved_db_url)
    pg = _environment(services["postgres"])
    assert url.scheme == "postgresql+psycopg"
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    assert url.path == f"/{pg['POSTGRES_DB']}"

    migrate_env = _environment(services["migrate"])
    db_names = option_envvars(DB_UPGRADE, "db_url") & set(migrate_env)
    assert db_names, "migrate must pass the database URL under a name `db upgrade` reads"
    assert {migrate_env[n] for n in db_names} == {settings.resolved_db_url}


def test_published_ports_bind_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping}"


def test_bind_mounted_configs_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"missing {source}"


def test_otlp_endpoint_is_the_collector_http_receiver(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["gateway"])
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector" and endpoint.hostname in compose["services"]
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    collector = load_yaml(DEPLOY / "otel-collector.yaml")
    http_receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http_receiver.rsplit(":", 1)[1] == str(endpoint.port)


def test_gpu_override_swaps_in_the_cuda_image_on_one_gpu(gpu_override: dict[str, Any],
                                                          compose: dict[str, Any]) -> None:
    services = gpu_override["services"]
    assert set(services) <= set(compose["services"])
    for name in ("gateway", "migrate"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile.cuda"
        assert services[name]["image"] == f"prefixgate:{project_version()}-cuda"
    gateway = services["gateway"]
    (device,) = gateway["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    merged_env = {**_environment(compose["services"]["gateway"]), **_environment(gateway)}
    assert Settings.from_env(merged_env).device == "cuda"
    assert gateway["healthcheck"]["test"][2:] == ["/usr/local/bin/prefixgate-healthcheck",
                                                  "/readyz"]


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" not in service:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: {service['image']}"
            assert any(ch.isdigit() for ch in tag)
