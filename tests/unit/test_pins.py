"""Every dependency is pinned exactly, and the pin is what this suite runs on (so the suite proves it)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][0-9A-Za-z.+!-]*)$")


def _project() -> dict[str, object]:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)["project"]  # type: ignore[no-any-return]


def _requirements() -> list[str]:
    project = _project()
    extras = project.get("optional-dependencies", {})
    assert isinstance(extras, dict)
    return [*project["dependencies"], *extras.get("dev", [])]  # type: ignore[misc]


REQUIREMENTS = _requirements()


def test_there_are_pins() -> None:
    assert len(REQUIREMENTS) >= 20
    names = [PIN.match(r).group("name").lower().replace("_", "-") for r in REQUIREMENTS if PIN.match(r)]
    assert len(names) == len(set(names)), "a dependency is listed twice"


@pytest.mark.parametrize("requirement", REQUIREMENTS)
def test_pin_is_exact_and_installed(requirement: str) -> None:
    match = PIN.match(requirement.strip())
    assert match, f"{requirement!r} is not pinned as name==version"
    name, version = match["name"], match["version"]
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is pinned in pyproject.toml but not installed")
    assert installed == version, f"{name}: pinned {version}, installed {installed}"
