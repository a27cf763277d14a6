"""Browser tests: Debian's headless Chromium, driven by Playwright, against the running platform.

Why these pieces: the pages are the built web/dist the gateway serves (the build runs here when it
is missing, as `make web` does); Chromium is Debian's (`/usr/bin/chromium`, installed by
`scripts/ensure-services.sh chromium`), started with the flags a closed network needs and a fresh
profile per context; axe-core comes from web/node_modules (pinned in web/package-lock.json). Each
page checked leaves a full-page screenshot in test-artifacts/browser/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.processes import ROOT

WEB = ROOT / "web"
CHROMIUM = os.environ.get("SPORTELLO_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
# a closed network: no background traffic, no component updates, no QUIC, no sync; the sandbox needs
# user namespaces that a CI container (running as root) does not give
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _stale(dist: Path) -> bool:
    built = dist / "portal" / "index.html"
    if not built.is_file():
        return True
    sources = [p for folder in ("src", "portal", "console") for p in (WEB / folder).rglob("*") if p.is_file()]
    sources += [WEB / "package-lock.json", WEB / "vite.config.js"]
    return max(p.stat().st_mtime for p in sources) > built.stat().st_mtime


@pytest.fixture(scope="session")
def web_build() -> Path:
    """web/dist, built now when missing or older than its sources (npm ci only when node_modules is missing)."""
    dist = WEB / "dist"
    npm = shutil.which("npm")
    if _stale(dist) or not AXE.is_file():
        assert npm, "npm is needed to build web/ (Node.js 20 + npm): apt-get install nodejs npm"
        if not (WEB / "node_modules" / ".package-lock.json").is_file():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    assert (dist / "portal" / "index.html").is_file() and (dist / "console" / "index.html").is_file()
    return dist


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).is_file(), (f"{CHROMIUM} missing: run scripts/ensure-services.sh chromium "
                                      "(apt-get install chromium chromium-driver)")
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


def new_page(browser: Browser, locale: str = "it-IT") -> Page:
    """A fresh context (own profile: cookies, storage) and page; downloads allowed."""
    context = browser.new_context(locale=locale, accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    return context.new_page()


def check_page(page: Page, name: str) -> list[dict[str, Any]]:
    """Screenshot the page into test-artifacts/browser/<name>.png and run axe-core (WCAG 2.1 A/AA) on it.

    Returns the serious and critical violations (the tests assert there are none). axe is evaluated
    through the DevTools protocol, so the pages' Content-Security-Policy stays in force.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS)
    bad = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
            "targets": [n["target"] for n in v["nodes"]][:5]}
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    (ARTIFACTS / f"{name}.axe.txt").write_text(
        "\n".join(f"{v['impact']}: {v['id']} - {v['help']} {v['targets']}" for v in bad) or "no serious or critical "
        f"violations ({len(result['passes'])} rules passed)\n", encoding="utf-8")
    return bad
