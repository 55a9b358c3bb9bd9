"""Every Kubernetes object in deploy/k8s against the Kubernetes OpenAPI-derived JSON schemas
(strict: unknown fields are errors), for the oldest and newest Kubernetes minor we target.
The schemas ship inside the kubernetes-validate wheel: no cluster, no network."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from tests.deploy.deploy_files import (
    K8S,
    k8s_manifest_files,
    load_yaml_documents,
    variant_manifests,
)

OLDEST_K8S = "1.31.0"
VERSIONS = (OLDEST_K8S, kv.latest_version())
VARIANTS = ("cpu", "gpu")

DOCUMENTS = [(path, index, doc) for path in k8s_manifest_files()
             for index, doc in enumerate(load_yaml_documents(path))]


def _id(entry: tuple[Path, int, dict[str, Any]]) -> str:
    path, index, _ = entry
    return f"{path.relative_to(K8S)}#{index}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("entry", DOCUMENTS, ids=[_id(e) for e in DOCUMENTS])
def test_object_matches_the_kubernetes_schema(entry: tuple[Path, int, dict[str, Any]],
                                              version: str) -> None:
    _, _, doc = entry
    kv.validate(doc, version, strict=True)


def test_every_manifest_file_was_found() -> None:
    kinds = {doc["kind"] for _, _, doc in DOCUMENTS}
    assert {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "Job",
            "Deployment", "PersistentVolumeClaim"} <= kinds


def test_schema_rejects_broken_objects() -> None:
    """Control: a misspelt probe key and a string port are schema errors."""
    deployment = variant_manifests("cpu")[("Deployment", "prefixgate")].doc
    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"variant-{v}")
def test_kustomize_renders_the_same_objects(variant: str) -> None:
    """Where kubectl is installed, its kustomize output equals what the tests read."""
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S / variant)], check=True,
                              capture_output=True, text=True, timeout=120).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    expected = {key: m.doc for key, m in variant_manifests(variant).items()}
    assert {(d["kind"], d["metadata"]["name"]): d for d in docs} == expected
