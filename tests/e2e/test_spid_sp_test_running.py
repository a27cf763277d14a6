"""AgID's spid-sp-test against the running SP: the gateway and `spid` as real processes.

The tool reads the SP metadata from the gateway's metadata route, gets every AuthnRequest from the
gateway's login route (Redirect and POST bindings) and posts its full set of crafted IdP Responses
to the gateway's ACS route; the gateway calls `spid` over RPC (RabbitMQ), which keeps its pending
requests and seen assertions in PostgreSQL. The one liberty: the ACS in the metadata is
https://<entity id's host>/... (SPID wants https without a port), so the authn plugin
(tests/e2e/spid_sp_test_plugin.py) sends those posts to the same path on the local gateway,
as a TLS front would in production.

spid-sp-test 1.2.18 lives in its own virtualenv (`.tools/spid-sp-test`, created here with pip when
missing: it pins pysaml2/xmlschema versions the platform does not use) and needs the Debian
`xmlsec1` binary. The test fails when the tool is missing, when any check fails, or when fewer
Response tests ran than the tool's full set (`spid_sp_test -prs`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.servers import Databases, isolated_vhost, require_postgresql, require_rabbitmq
from tests.support.spid_login import SPID_SP_TEST_IDP, RunningSp, running_sp

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TOOL_VENV = Path(os.environ.get("SPID_SP_TEST_VENV", ROOT / ".tools" / "spid-sp-test"))
TOOL = TOOL_VENV / "bin" / "spid_sp_test"
PLUGIN_DIR = Path(__file__).resolve().parent  # spid_sp_test_plugin.py; the tool imports it via PYTHONPATH


def _ensure_tool() -> Path:
    if not TOOL.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOL_VENV)], check=True)
        subprocess.run([str(TOOL_VENV / "bin" / "pip"), "install", "-q", "spid-sp-test==1.2.18"], check=True)
    assert shutil.which("xmlsec1"), "spid-sp-test needs the xmlsec1 binary: apt-get install xmlsec1"
    return TOOL


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSp, Path]]:
    require_rabbitmq()
    require_postgresql()
    tool = _ensure_tool()
    work = tmp_path_factory.mktemp("spid-sp-test-running")
    idp_metadata = work / "spid-sp-test-idp.xml"
    idp_metadata.write_bytes(subprocess.run([str(tool), "--idp-metadata"], check=True, capture_output=True).stdout)
    databases = Databases()
    try:
        with isolated_vhost() as amqp_uri, running_sp(work, amqp_uri, databases, idp_metadata) as running:
            yield running, work
    finally:
        databases.drop_all()


def _login_url(sp: RunningSp, binding: str = "redirect") -> str:
    return sp.url("/auth/spid/login") + "?" + urlencode({"idp": SPID_SP_TEST_IDP, "level": "2",
                                                         "binding": binding})


def _run(sp: RunningSp, work: Path, args: list[str], name: str) -> dict[str, Any]:
    report = work / f"{name}.json"
    env = {**os.environ, "SPID_SP_TEST_LOCAL": sp.gateway, "SPID_SP_TEST_PUBLIC": sp.public,
           "PYTHONPATH": str(PLUGIN_DIR)}
    done = subprocess.run([str(TOOL), "--metadata-url", sp.url("/auth/spid/metadata"), "-pr", "spid-sp-public",
                           "-rf", "json", "-o", str(report), "-d", "ERROR", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    logs = "\n".join(p.log()[-1500:] for p in sp.processes)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:] + logs
    data = json.loads(report.read_text(encoding="utf-8"))
    out = done.stdout + done.stderr
    summary = re.search(r"executed (\d+) tests, (\d+) failed", out)
    assert summary, out[-3000:]
    return {"exit": done.returncode, "report": data["test"]["sp"], "out": out,
            "executed": int(summary.group(1)), "failed": int(summary.group(2))}


def _failures(section: dict[str, Any]) -> list[str]:
    failed = []
    for checks in section.values():
        for check in (checks if isinstance(checks, list) else []):
            if check.get("result") == "failure":
                failed.append(f"{check.get('test')}: {check.get('value', '')}")
    return failed


def _acs_outcomes(log: str) -> int:
    return log.count('"event": "spid_login_completed"') + log.count('"event": "spid_login_rejected"')


def test_metadata_from_the_gateway_is_https_as_spid_wants(sp: tuple[RunningSp, Path]) -> None:
    """The premise of the plugin's one mapping: the ACS in the metadata is the public https origin."""
    running, _ = sp
    assert running.public.startswith("https://") and ":" not in running.public[len("https://"):]
    metadata = httpx.get(running.url("/auth/spid/metadata"), timeout=10).text
    assert f'Location="{running.public}/v1/tenants/cremona/auth/spid/acs"' in metadata


def test_metadata_and_authn_request_pass_spid_sp_test(sp: tuple[RunningSp, Path]) -> None:
    running, work = sp
    for args, name in ((["--authn-url", _login_url(running)], "core"),
                       (["--extra", "--authn-url", _login_url(running)], "extra")):
        result = _run(running, work, args, name)
        assert {k.split("_")[0] for k in result["report"]} == {"metadata", "authnrequest"}
        for section in result["report"].values():
            assert not _failures(section), _failures(section)
        assert result["failed"] == 0 and result["executed"] >= 50, result["out"][-2000:]
        assert result["exit"] == 0, result["out"][-2000:]


def test_authn_request_post_binding_passes_spid_sp_test(sp: tuple[RunningSp, Path]) -> None:
    running, work = sp
    result = _run(running, work, ["--authn-url", _login_url(running, "post")], "authn-post")
    assert any(k.startswith("authnrequest") for k in result["report"]), result["out"][-2000:]
    for section in result["report"].values():
        assert not _failures(section), _failures(section)
    assert result["failed"] == 0, result["out"][-2000:]
    assert result["exit"] == 0, result["out"][-2000:]


def test_every_crafted_response_posted_to_the_gateway_gets_the_expected_answer(sp: tuple[RunningSp, Path]) -> None:
    running, work = sp
    spid = next(p for p in running.processes if p.component == "spid")
    before = _acs_outcomes(spid.log())
    result = _run(running, work, ["--authn-url", _login_url(running), "-tr", "-ap", "spid_sp_test_plugin.Rewrite"],
                  "responses")
    responses = result["report"].get("response")
    assert responses, result["out"][-2000:]
    assert not _failures(responses), _failures(responses)
    # one check per Response test, named "Test [<id>] ..." (a failed one has no test_id, so count by name)
    checks = [c for group in responses.values() if isinstance(group, list) for c in group]
    ran = {m.group(1) for c in checks if (m := re.match(r"Test \[(\w+)\]", str(c.get("test", ""))))}
    expected = json.loads(subprocess.run([str(TOOL), "-prs"], check=True, capture_output=True, text=True).stdout)
    assert len(expected) >= 100 and ran == set(expected), f"{len(ran)} of the {len(expected)} Response tests ran"
    for section in result["report"].values():
        assert not _failures(section), _failures(section)
    assert result["failed"] == 0, result["out"][-2000:]
    assert result["exit"] == 0, result["out"][-2000:]
    # and each of them reached the `spid` process through the gateway (its ACS logs one outcome per Response)
    assert _acs_outcomes(spid.log()) - before >= len(expected), "Responses did not all reach the spid service"
