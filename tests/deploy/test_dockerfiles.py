"""The CPU and CUDA Dockerfiles, checked as far as a machine without a Docker engine allows:
stages, pinned bases, non-root user, health check, torch index order, and that every COPY
source exists in the repository and survives the image's .dockerignore."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from gateway.settings import Settings
from tests.deploy.deploy_files import (
    DOCKERFILES,
    ROOT,
    Dockerfile,
    Instruction,
    dockerignore_patterns,
    is_ignored,
    makefile_torch_version,
    parse_dockerfile,
    pyproject,
)
from tests.deploy.gateway_env import SERVE, command_reads, resolve_command

HEALTHCHECK_BIN = "/usr/local/bin/prefixgate-healthcheck"
# Non-PREFIXGATE variables the runtime images set, each read by the interpreter or a library.
RUNTIME_ENV_ALLOWED = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "DEBIAN_FRONTEND",
                       "TRITON_CACHE_DIR"}
# name:tag where the tag carries a full x.y.z release; an optional @sha256 digest may follow.
PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+:(?!latest)[A-Za-z0-9._-]*\d+\.\d+\.\d+[A-Za-z0-9._-]*"
                          r"(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[request.param])


def _copy_args(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    words = shlex.split(instruction.value)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def _exec_form(value: str, after: str = "") -> list[str]:
    """The JSON array in `value` after the word `after` (exec form: no shell as PID 1)."""
    rest = value.partition(after)[2] if after else value
    parsed = json.loads(rest.strip())
    assert isinstance(parsed, list), f"{value!r} must use the exec (JSON) form"
    return [str(part) for part in parsed]


def test_is_multi_stage_with_builder_and_runtime(dockerfile: Dockerfile) -> None:
    assert [s.name for s in dockerfile.stages] == ["builder", "runtime"]


def test_base_images_are_pinned_releases(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        assert PINNED_IMAGE.match(stage.image), f"{stage.name}: {stage.image} is not pinned"


def test_cuda_image_uses_the_torch_index_of_its_cuda_release() -> None:
    cuda = parse_dockerfile(DOCKERFILES["cuda"])
    match = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-", cuda.final.image)
    assert match, f"CUDA runtime base expected, got {cuda.final.image}"
    index = cuda.stage("builder").arg_defaults()["TORCH_INDEX_URL"]
    assert index.endswith(f"/whl/cu{match[1]}{match[2]}")


def test_cpu_image_installs_torch_from_the_cpu_index() -> None:
    cpu = parse_dockerfile(DOCKERFILES["cpu"])
    assert cpu.stage("builder").arg_defaults()["TORCH_INDEX_URL"].endswith("/whl/cpu")


def test_torch_comes_first_at_the_makefile_version(dockerfile: Dockerfile) -> None:
    builder = dockerfile.stage("builder")
    assert builder.arg_defaults()["TORCH_VERSION"] == makefile_torch_version()
    runs = [i.value for i in builder.all("RUN")]
    torch_step = next(n for n, r in enumerate(runs) if "--index-url" in r and "torch==" in r)
    project_step = next(n for n, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch_step < project_step, "torch must be installed before the project"


def test_runtime_runs_as_the_unprivileged_user_it_creates(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.final
    user = runtime.last("USER")
    assert user is not None, "the runtime stage must set USER"
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, "USER must be a numeric non-root uid"
    created = " ".join(i.value for i in runtime.all("RUN"))
    assert f"--uid {uid}" in created and f"--gid {gid or uid}" in created
    assert all(i.line < user.line for i in runtime.all("RUN")), "no RUN after USER"


def test_healthcheck_probes_healthz_with_the_shipped_script(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.final
    check = runtime.last("HEALTHCHECK")
    assert check is not None
    command = _exec_form(check.value, "CMD")
    assert command[1:] == [HEALTHCHECK_BIN, "/healthz"]
    shipped = [_copy_args(i) for i in runtime.all("COPY")]
    assert (["deploy/healthcheck.py"], HEALTHCHECK_BIN) in [(s, d) for _, s, d in shipped]


def test_entrypoint_is_the_console_script_and_cmd_a_real_command(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.final
    entrypoint, cmd = runtime.last("ENTRYPOINT"), runtime.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert _exec_form(entrypoint.value) == ["prefixgate"]
    assert "prefixgate" in pyproject()["project"]["scripts"]
    assert tuple(_exec_form(cmd.value)) == SERVE
    resolve_command(SERVE)


def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Dockerfile) -> None:
    patterns = dockerignore_patterns(dockerfile.path)
    stage_names = {s.name for s in dockerfile.stages}
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            assert instruction.keyword == "COPY", "use COPY, not ADD"
            flags, sources, _ = _copy_args(instruction)
            if "from" in flags:
                assert flags["from"] in stage_names - {stage.name}
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"line {instruction.line}: COPY source {source} is missing"
                files = [path] if path.is_file() else list(path.rglob("*.py"))
                assert files, f"COPY source {source} has no files"
                for file in files:
                    relative = file.relative_to(ROOT).as_posix()
                    assert not is_ignored(patterns, relative), f"{relative} is .dockerignored"


def test_build_context_leaves_out_the_dev_tree(dockerfile: Dockerfile) -> None:
    patterns = dockerignore_patterns(dockerfile.path)
    for relative in (".venv/bin/python", ".git/HEAD", "data/prefixgate.db", "tests/conftest.py",
                     "bench/RESULTS.md", "gateway/__pycache__/app.cpython-311.pyc"):
        assert is_ignored(patterns, relative), relative


def test_every_packaged_package_is_copied(dockerfile: Dockerfile) -> None:
    """`pip install .` in the image builds what [tool.setuptools] packages: all of it is there."""
    project = pyproject()
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {src for i in dockerfile.stage("builder").all("COPY") for src in _copy_args(i)[1]}
    assert packages <= copied
    assert {"pyproject.toml", project["project"]["readme"]} <= copied


def test_runtime_env_configures_a_reachable_gateway(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.final
    env = runtime.env()
    for name in env:
        if name.startswith("PREFIXGATE_"):
            assert command_reads(SERVE, name), f"`prefixgate serve` does not read {name}"
        else:
            assert name in RUNTIME_ENV_ALLOWED, f"unexpected ENV {name}"
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("PREFIXGATE_")})
    assert settings.host == "0.0.0.0", "the gateway must listen beyond the container's loopback"
    exposed = runtime.last("EXPOSE")
    assert exposed is not None and exposed.value == str(settings.port)
    workdir = runtime.last("WORKDIR")
    assert workdir is not None and workdir.value == str(settings.data_dir)
    owned_dir = " ".join(i.value for i in runtime.all("RUN"))
    assert f"-o prefixgate -g prefixgate -m 0750 {settings.data_dir}" in owned_dir
    expected_device = "cpu" if dockerfile.path.name.endswith(".cpu") else "cuda"
    assert settings.device == expected_device
