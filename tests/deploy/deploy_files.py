"""Loading deploy/ as data: YAML documents, compose interpolation, Dockerfile stages, ignores.

Everything here reads files only; no Docker engine, cluster or network is involved.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = {"cpu": DEPLOY / "Dockerfile.cpu", "cuda": DEPLOY / "Dockerfile.cuda"}
COMPOSE_FILES = (DEPLOY / "compose.yaml", DEPLOY / "compose.gpu.yaml")
HEALTHCHECK_SCRIPT = DEPLOY / "healthcheck.py"

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` substitution, as `docker compose config` does."""
    def substitute(match: re.Match[str]) -> str:
        found = environ.get(match["name"])
        if found:
            return found
        return match["default"] or ""

    return _INTERPOLATION.sub(substitute, value)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def project_version() -> str:
    return str(pyproject()["project"]["version"])


def makefile_torch_version() -> str:
    """The torch version the Makefile installs (TORCH_SPEC ?= torch==X)."""
    match = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile has no TORCH_SPEC ?= torch==<version>"
    return match[1]


@dataclass(slots=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), its raw value, its source line."""

    keyword: str
    value: str
    line: int


@dataclass(slots=True)
class Stage:
    """One build stage: its base image (ARG defaults applied), name and instructions."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def arg_defaults(self) -> dict[str, str]:
        return dict(_key_value(i.value) for i in self.all("ARG") if "=" in i.value)

    def env(self) -> dict[str, str]:
        """The stage's ENV as a mapping (`ENV A=1 \\ B=2` form)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in instruction.value.split():
                name, _, raw = token.partition("=")
                values[name] = raw
        return values


@dataclass(slots=True)
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def _key_value(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name.strip(), value.strip().strip('"')


def parse_dockerfile(path: Path) -> Dockerfile:
    with path.open("rb") as handle:
        parser = DockerfileParser(fileobj=handle, env_replace=False, cache_content=True)
        structure = parser.structure
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in structure:
        keyword, value = item["instruction"].upper(), item["value"].strip()
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            words = value.split()
            assert len(words) in (1, 3), f"{path.name}: unsupported FROM {value!r}"
            image = words[0]
            for name, default in global_args.items():
                image = image.replace("${" + name + "}", default)
            stages.append(Stage(image=image, name=words[2] if len(words) == 3 else None))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: {keyword} before the first FROM"
            global_args.update([_key_value(value)])
        else:
            stages[-1].instructions.append(Instruction(keyword, value, item["startline"] + 1))
    return Dockerfile(path, global_args, stages)


def dockerignore_patterns(dockerfile: Path) -> list[str]:
    """Patterns of the Dockerfile-specific ignore file (`<Dockerfile>.dockerignore`)."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    lines = [line.strip() for line in ignore.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def is_ignored(patterns: list[str], relative_path: str) -> bool:
    """Whether the build context drops `relative_path` (last matching pattern wins; a pattern
    matching a parent directory covers everything below it), as Docker's matcher does."""
    parts = relative_path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object and the file it came from."""

    path: Path
    doc: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.doc["kind"], self.doc["metadata"]["name"]


def k8s_manifest_files() -> list[Path]:
    """Every Kubernetes object file under deploy/k8s (kustomizations excluded)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def kustomize_files(directory: Path) -> list[Path]:
    """The files a kustomization includes, following `resources` into other directories."""
    kustomization = load_yaml(directory / "kustomization.yaml")
    files: list[Path] = []
    for entry in kustomization["resources"]:
        target = (directory / entry).resolve()
        files.extend(kustomize_files(target) if target.is_dir() else [target])
    return files


def variant_manifests(variant: str) -> dict[tuple[str, str], Manifest]:
    """The objects `kubectl apply -k deploy/k8s/<variant>` creates, keyed by (kind, name)."""
    found: dict[tuple[str, str], Manifest] = {}
    for path in kustomize_files(K8S / variant):
        for doc in load_yaml_documents(path):
            manifest = Manifest(path, doc)
            assert manifest.key not in found, f"{manifest.key} defined twice"
            found[manifest.key] = manifest
    return found
