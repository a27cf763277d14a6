"""The gateway's static pages (gateway/routes/pages.py) and the web build's pins (web/package.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.routes.pages import CSP, NOT_BUILT, static_file
from tests.support.processes import ROOT

WEB = ROOT / "web"


@pytest.fixture()
def dist(tmp_path: Path) -> Path:
    (tmp_path / "portal").mkdir()
    (tmp_path / "portal" / "index.html").write_text("<!doctype html><title>portal</title>", encoding="utf-8")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app-1a2b3c.js").write_text("console.log(1)", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("not for the web", encoding="utf-8")
    return tmp_path


def test_a_folder_serves_its_index_with_the_page_headers(dist: Path) -> None:
    page = static_file("portal", "", root=dist)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP and "frame-ancestors 'none'" in CSP
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["X-Content-Type-Options"] == "nosniff"


def test_hashed_assets_are_cached_for_long(dist: Path) -> None:
    asset = static_file("assets", "app-1a2b3c.js", root=dist)
    assert asset.status_code == 200 and asset.mimetype in ("text/javascript", "application/javascript")
    assert "immutable" in asset.headers["Cache-Control"]


@pytest.mark.parametrize(("section", "path"), [
    ("portal", "../secret.txt"), ("portal", "..%2Fsecret.txt"), ("assets", "/etc/passwd"), ("portal", "missing.js"),
    ("other", "index.html"), ("portal", "../../pyproject.toml"),
])
def test_nothing_outside_the_section_is_served(dist: Path, section: str, path: str) -> None:
    answer = static_file(section, path, root=dist)
    assert answer.status_code == 404 and b"not for the web" not in answer.get_data()


def test_unbuilt_pages_say_how_to_build_them(tmp_path: Path) -> None:
    answer = static_file("portal", "", root=tmp_path / "dist")
    assert answer.status_code == 404 and answer.get_data(as_text=True) == NOT_BUILT


def test_npm_dependencies_are_pinned_exactly_and_locked() -> None:
    package = json.loads((WEB / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((WEB / "package-lock.json").read_text(encoding="utf-8"))
    declared = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    assert {"bootstrap-italia", "vite", "axe-core"} <= set(declared)
    for name, version in declared.items():
        assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version), f"{name}: {version} is not an exact version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
