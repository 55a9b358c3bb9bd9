"""What the schemas cannot see in deploy/k8s: objects wired to each other (selectors, ports,
Secret keys, volumes), probes on the gateway's real routes, env names the gateway reads and
settings that resolve to a reachable pod, the migration Job, restricted pod security, GPU
resources, and the GPU Deployment staying the CPU one plus its GPU-only differences."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opentelemetry.sdk import environment_variables as otel_env

from gateway.app import create_app
from gateway.settings import Settings
from tests.deploy.deploy_files import (
    DOCKERFILES,
    K8S,
    Manifest,
    k8s_manifest_files,
    kustomize_files,
    load_yaml_documents,
    parse_dockerfile,
    project_version,
    variant_manifests,
)
from tests.deploy.gateway_env import (
    DB_UPGRADE,
    SERVE,
    any_command_reads,
    command_reads,
    option_envvars,
)

VARIANTS = ("cpu", "gpu")
NAMESPACE = "prefixgate"
SECRET_TEMPLATE = K8S / "common" / "secret.example.yaml"
GPU = "nvidia.com/gpu"
IMAGE_FLAVOUR = {"cpu": "cpu", "gpu": "cuda"}


def _ids(variant: str) -> str:
    return f"variant-{variant}"


@pytest.fixture(scope="module", params=VARIANTS, ids=_ids)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def objects(variant: str) -> dict[tuple[str, str], Manifest]:
    return variant_manifests(variant)


@pytest.fixture(scope="module")
def secret_template() -> dict[str, str]:
    (doc,) = load_yaml_documents(SECRET_TEMPLATE)
    return dict(doc["stringData"])


def _deployment(objects: dict[tuple[str, str], Manifest]) -> dict[str, Any]:
    return objects[("Deployment", "prefixgate")].doc


def _job(objects: dict[tuple[str, str], Manifest]) -> dict[str, Any]:
    return objects[("Job", "prefixgate-db-upgrade")].doc


def _pod_specs(objects: dict[tuple[str, str], Manifest]) -> list[dict[str, Any]]:
    return [doc["spec"]["template"]["spec"] for doc in (_deployment(objects), _job(objects))]


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    return container


def _resolved_env(container: dict[str, Any], objects: dict[tuple[str, str], Manifest],
                  secret: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (Secret values from the template);
    explicit `env` entries override `envFrom`, as in Kubernetes."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = objects[("ConfigMap", source["configMapRef"]["name"])].doc
        env.update(config_map["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "prefixgate-secrets"
            assert ref["key"] in secret, f"secret key {ref['key']} not in the template"
            env[entry["name"]] = secret[ref["key"]]
    return env


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def test_every_manifest_is_applied_by_a_variant_except_the_secret_template() -> None:
    applied = {p for variant in VARIANTS for p in kustomize_files(K8S / variant)}
    assert set(k8s_manifest_files()) - applied == {SECRET_TEMPLATE}


def test_objects_live_in_the_prefixgate_namespace(objects: dict[tuple[str, str], Manifest]) -> None:
    assert ("Namespace", NAMESPACE) in objects
    for key, manifest in objects.items():
        if key[0] != "Namespace":
            assert manifest.doc["metadata"]["namespace"] == NAMESPACE, key


def test_selectors_match_pods_and_the_service_reaches_the_http_port(
        objects: dict[tuple[str, str], Manifest]) -> None:
    deployment = _deployment(objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = objects[("Service", "prefixgate")].doc["spec"]
    assert service["selector"].items() <= pod_labels.items()
    job_labels = _job(objects)["spec"]["template"]["metadata"]["labels"]
    assert not service["selector"].items() <= job_labels.items(), "service must skip the Job"
    port_names = {p["name"] for p in _container(deployment["spec"]["template"]["spec"])["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= port_names


def test_probes_use_the_gateway_routes(objects: dict[tuple[str, str], Manifest]) -> None:
    container = _container(_deployment(objects)["spec"]["template"]["spec"])
    routes = {route.path for route in create_app(Settings(admin_token="probe")).routes}
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz",
                "startupProbe": "/healthz"}
    port_names = {p["name"] for p in container["ports"]}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in routes
        assert get["port"] in port_names


def test_gateway_env_is_read_and_resolves_to_a_reachable_pod(
        variant: str, objects: dict[tuple[str, str], Manifest],
        secret_template: dict[str, str]) -> None:
    pod = _deployment(objects)["spec"]["template"]
    container = _container(pod["spec"])
    env = _resolved_env(container, objects, secret_template)
    known_otel = {n for n in dir(otel_env) if n.startswith("OTEL_")}
    for name in env:
        if name.startswith("OTEL_"):
            assert name in known_otel, f"{name} is not an OpenTelemetry SDK variable"
        else:
            # Read by `serve`, or (the audit signing key) by `prefixgate audit ...` in the pod.
            assert command_reads(SERVE, name) or any_command_reads(name), name
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("PREFIXGATE_")})
    (http,) = [p for p in container["ports"] if p["name"] == "http"]
    assert settings.host == "0.0.0.0"
    assert settings.port == http["containerPort"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(settings.port)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    mounts = _mounts(container)
    assert mounts["data"]["mountPath"] == str(settings.data_dir)
    assert settings.admin_token, "the admin token must come from the Secret"
    assert settings.resolved_db_url.startswith("postgresql+psycopg://")
    if variant == "gpu":
        assert settings.device == "cuda"
        assert mounts["models"]["mountPath"] == str(settings.model_dir)
        assert mounts["models"]["readOnly"] is True
    else:
        assert settings.device == "cpu"
        assert settings.model_dir is None, "CPU default: the tiny model in the data dir"


def test_migration_job_runs_db_upgrade_with_the_database_url(
        objects: dict[tuple[str, str], Manifest], secret_template: dict[str, str]) -> None:
    job = _job(objects)
    pod = job["spec"]["template"]["spec"]
    container = _container(pod)
    assert tuple(container["args"]) == DB_UPGRADE
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1
    env = _resolved_env(container, objects, secret_template)
    for name in env:
        assert command_reads(DB_UPGRADE, name), f"`prefixgate db upgrade` does not read {name}"
    assert option_envvars(DB_UPGRADE, "db_url") & set(env)
    gateway_env = _resolved_env(_container(_deployment(objects)["spec"]["template"]["spec"]),
                                objects, secret_template)
    assert Settings.from_env(env).resolved_db_url == Settings.from_env(
        {k: v for k, v in gateway_env.items() if k.startswith("PREFIXGATE_")}).resolved_db_url


def test_images_carry_the_project_version(variant: str,
                                          objects: dict[tuple[str, str], Manifest]) -> None:
    version = project_version()
    gateway = _container(_deployment(objects)["spec"]["template"]["spec"])
    assert gateway["image"] == f"prefixgate:{version}-{IMAGE_FLAVOUR[variant]}"
    assert _container(_job(objects)["spec"]["template"]["spec"])["image"] == (
        f"prefixgate:{version}-cpu"), "migrations need no GPU: the small image"


def test_pods_meet_the_restricted_pod_security_standard(
        objects: dict[tuple[str, str], Manifest]) -> None:
    uid = parse_dockerfile(DOCKERFILES["cpu"]).final.last("USER")
    assert uid is not None
    labels = objects[("Namespace", NAMESPACE)].doc["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in _pod_specs(objects):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert f"{security['runAsUser']}:{security['runAsGroup']}" == uid.value
        assert security["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert ("ServiceAccount", pod["serviceAccountName"]) in objects
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        assert all("hostPath" not in volume for volume in pod.get("volumes", []))
        container = _container(pod)
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert not context.get("privileged")
        volumes = {v["name"] for v in pod["volumes"]}
        assert set(_mounts(container)) <= volumes
        assert "/tmp" in {m["mountPath"] for m in _mounts(container).values()}


def test_volume_claims_exist(objects: dict[tuple[str, str], Manifest]) -> None:
    for pod in _pod_specs(objects):
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in objects


def test_resources_and_gpu_requests(variant: str,
                                    objects: dict[tuple[str, str], Manifest]) -> None:
    for pod in _pod_specs(objects):
        resources = _container(pod)["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]
    deployment = _deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    resources = _container(pod)["resources"]
    if variant == "gpu":
        assert resources["requests"][GPU] == resources["limits"][GPU] == 1
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        # One GPU per pod: never start the new pod before the old one has freed its GPU.
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    else:
        assert GPU not in resources["requests"] and GPU not in resources["limits"]
    job_resources = _container(_job(objects)["spec"]["template"]["spec"])["resources"]
    assert GPU not in job_resources["requests"] and GPU not in job_resources["limits"]


def _strip_gpu_differences(deployment: dict[str, Any], gpu_extras: dict[str, set[str]]
                           ) -> dict[str, Any]:
    """The Deployment without the fields the GPU variant may change or add."""
    stripped = copy.deepcopy(deployment)
    stripped["spec"].pop("strategy")
    pod = stripped["spec"]["template"]["spec"]
    pod.pop("tolerations", None)
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in gpu_extras["volumes"]]
    container = _container(pod)
    for key in ("image", "resources"):
        container.pop(key)
    container["startupProbe"].pop("failureThreshold")
    container["env"] = [e for e in container["env"] if e["name"] not in gpu_extras["env"]]
    container["volumeMounts"] = [m for m in container["volumeMounts"]
                                 if m["name"] not in gpu_extras["volumes"]]
    return stripped


def test_gpu_deployment_is_the_cpu_one_plus_gpu_differences() -> None:
    cpu = _deployment(variant_manifests("cpu"))
    gpu = _deployment(variant_manifests("gpu"))
    gpu_extras = {"env": {"PREFIXGATE_DEVICE", "PREFIXGATE_MODEL"},
                  "volumes": {"models", "dshm"}}
    assert _strip_gpu_differences(gpu, gpu_extras) == _strip_gpu_differences(cpu, gpu_extras)
    cpu_env = {e["name"] for e in _container(cpu["spec"]["template"]["spec"])["env"]}
    assert not cpu_env & gpu_extras["env"], "the CPU pod takes device and model from defaults"
