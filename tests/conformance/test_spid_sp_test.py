"""AgID's spid-sp-test against the SP: metadata, AuthnRequest and every crafted Response.

The SP runs in-process behind a small HTTP server that calls the same `LoginApplication` the
`spid` service exposes over RPC, with the gateway's own error table (gateway.errors.problem), so
statuses are what the gateway answers. spid-sp-test 1.2.18 lives in its own virtualenv
(`.tools/spid-sp-test`, created here with pip when missing: it pins pysaml2/xmlschema versions
the platform does not use) and needs the Debian `xmlsec1` binary. The suite fails when the tool
is missing, when any check fails, or when fewer Response tests ran than the tool's full set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from gateway.errors import problem
from services.spid.application import LoginApplication
from sportello.db import Database
from sportello.errors import SportelloError
from sportello.migrate import upgrade
from sportello.tenants import SpidConfig, Tenant, TenantRegistry
from sportello.tokens import SigningKey, TokenIssuer
from tests.support.spid import key_and_cert

ROOT = Path(__file__).resolve().parents[2]
TOOL_VENV = Path(os.environ.get("SPID_SP_TEST_VENV", ROOT / ".tools" / "spid-sp-test"))
TOOL = TOOL_VENV / "bin" / "spid_sp_test"
PUBLIC = "https://sportello.comune.example.it"
SPECS = ROOT.parent / "shared" / "specs" / "spid-cie" / "saml-xsd"
IDP_ENTITY = "https://localhost:8443"  # spid-sp-test's own fake IdP


def _ensure_tool() -> Path:
    if not TOOL.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOL_VENV)], check=True)
        subprocess.run([str(TOOL_VENV / "bin" / "pip"), "install", "-q", "spid-sp-test==1.2.18"], check=True)
    assert shutil.which("xmlsec1"), "spid-sp-test needs the xmlsec1 binary: apt-get install xmlsec1"
    return TOOL


class FileMetadata:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def fetch(self, location: str) -> bytes:
        return self.data


def _sp_app(app: LoginApplication) -> Any:
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            if request.path == "/metadata":
                response = Response(app.metadata_xml("cremona"), mimetype="application/samlmetadata+xml")
            elif request.path == "/login":
                started = app.start_login("cremona", IDP_ENTITY, level=2, binding=request.args.get("binding", "redirect"))  # type: ignore[arg-type]  # noqa: E501
                response = (Response("", 302, {"Location": started["url"]}) if started["binding"] == "redirect"
                            else Response(started["html"], mimetype="text/html"))
            elif request.path == "/v1/tenants/cremona/auth/spid/acs" and request.method == "POST":
                done = app.complete_login("cremona", request.form.get("SAMLResponse", ""), request.form.get("RelayState"))  # noqa: E501
                response = Response(json.dumps({"code": done["code"]}), mimetype="application/json")
            else:
                response = Response("not found", 404)
        except SportelloError as exc:
            response = problem(exc, request_id="spid-sp-test")
        return response(environ, start_response)
    return wsgi


@pytest.fixture(scope="module")
def running_sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tool = _ensure_tool()
    work = tmp_path_factory.mktemp("spid-sp-test")
    idp_metadata = subprocess.run([str(tool), "--idp-metadata"], check=True, capture_output=True).stdout
    url = f"sqlite:///{work / 'spid.sqlite3'}"
    upgrade("spid", url)
    database = Database(url)
    key, cert = key_and_cert("sp-spid-sp-test")
    tenant = Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                    ipa_code="c_d150", spid=SpidConfig(
                        entity_id=f"{PUBLIC}/spid", signing_key=SecretStr(key), signing_certificate=cert,  # type: ignore[arg-type]
                        idp_metadata=("spid-sp-test",), contact_phone="+390372407111",
                        contact_email="protocollo@comune.cremona.it"))
    app = LoginApplication(database, TenantRegistry({"cremona": tenant}),
                           TokenIssuer(SigningKey(key_and_cert("gateway")[0])), FileMetadata(idp_metadata),
                           clock=lambda: dt.datetime.now(dt.UTC))
    server = make_server("127.0.0.1", 0, _sp_app(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    (work / "metadata.xml").write_text(app.metadata_xml("cremona"), encoding="utf-8")
    yield base, work
    server.shutdown()
    database.dispose()


def _run(args: list[str], base: str, work: Path, name: str) -> dict[str, Any]:
    report = work / f"{name}.json"
    env = {**os.environ, "SPID_SP_TEST_LOCAL": base, "SPID_SP_TEST_PUBLIC": PUBLIC,
           "PYTHONPATH": str(Path(__file__).resolve().parent)}
    done = subprocess.run([str(TOOL), "--metadata-url", f"file://{work / 'metadata.xml'}", "-pr", "spid-sp-public",
                           "-rf", "json", "-o", str(report), "-d", "ERROR", *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
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


def test_metadata_and_authn_request_pass_spid_sp_test(running_sp: tuple[str, Path]) -> None:
    base, work = running_sp
    for args, name in ((["--authn-url", f"{base}/login"], "core"),
                       (["--extra", "--authn-url", f"{base}/login"], "extra")):
        result = _run(args, base, work, name)
        assert {k.split("_")[0] for k in result["report"]} == {"metadata", "authnrequest"}
        for section in result["report"].values():
            assert not _failures(section), _failures(section)
        assert result["failed"] == 0 and result["executed"] >= 50, result["out"][-2000:]
        assert result["exit"] == 0, result["out"][-2000:]


def test_authn_request_post_binding_passes_spid_sp_test(running_sp: tuple[str, Path]) -> None:
    base, work = running_sp
    result = _run(["--authn-url", f"{base}/login?binding=post"], base, work, "authn-post")
    assert any(k.startswith("authnrequest") for k in result["report"]), result["out"][-2000:]
    for section in result["report"].values():
        assert not _failures(section), _failures(section)
    assert result["failed"] == 0, result["out"][-2000:]
    assert result["exit"] == 0, result["out"][-2000:]


def test_every_crafted_response_gets_the_expected_answer(running_sp: tuple[str, Path]) -> None:
    base, work = running_sp
    result = _run(["--authn-url", f"{base}/login", "-tr", "-ap", "spid_sp_test_plugin.Rewrite"], base, work,
                  "responses")
    responses = {k: v for section in result["report"].values() for k, v in section.items()}
    checks = [c for group in responses.values() if isinstance(group, list) for c in group]
    expected = json.loads(subprocess.run([str(TOOL), "-prs"], check=True, capture_output=True, text=True).stdout)
    ran = {str(c.get("test_id")) for c in checks if c.get("test_id")}
    assert len(ran) >= len(expected), f"only {len(ran)} of {len(expected)} response tests ran"
    assert not _failures(responses), _failures(responses)
    assert result["failed"] == 0, result["out"][-2000:]
    assert result["exit"] == 0, result["out"][-2000:]
