"""Interoperability with the reference SPID/CIE OIDC implementation (PyPI `spid-cie-oidc`, italia/spid-cie-oidc-django).

The reference library runs in its own virtualenv (`.tools/spid-cie-oidc`, created here with pip
when missing, like spid-sp-test's) because it pins Django and pydantic 1. Over real HTTP on this
machine it resolves, with its own `TrustChainBuilder`: our RP's trust chain (the Comune's Entity
Configuration -> the twin anchor's statement) and the twin OP's two-hop chain (OP -> intermediate
-> anchor); then it validates what our RP sends a CIE OP with its own pydantic schemas and
signature checks, as its OP views do: the authorization request and request object, the token
request and client assertion, the refresh and revocation requests. Finally the reference's own
trust anchor and CIE OP (its Django apps, `reference_federation_server.py`) serve on this machine
and our RP logs a citizen in there end to end: their chain resolved with the pinned anchor keys,
our request object accepted by their OP, code -> tokens with private_key_jwt, ID token and
encrypted userinfo validated, refresh at their OP (offline_access), revocation at logout.
A missing tool is installed (so under CI=true it is installed or the test fails; nothing skips).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.cie_op.app import CieOpTwin
from sandbox.cie_op.provider import Federation
from services.spid.domain import cie
from services.spid.domain.federation import STATEMENT_MEDIA_TYPE, WELL_KNOWN, public_jwk, sign_jwt
from sportello.tenants import CieConfig, SpidConfig, Tenant
from tests.support.processes import ROOT, free_port, wait_for
from tests.support.spid import key_and_cert

REFERENCE = ("spid-cie-oidc==1.6.3", "design-django-theme==2.18.1")  # the theme: the OP's login pages
TOOL_VENV = Path(os.environ.get("SPID_CIE_OIDC_VENV", ROOT / ".tools" / "spid-cie-oidc"))
CHECK = Path(__file__).with_name("reference_oidc_check.py")
SERVER = Path(__file__).with_name("reference_federation_server.py")
EXPECTED = {"rp_entity_configuration", "rp_trust_chain", "op_trust_chain", "authorization_request",
            "token_request", "refresh_request", "revocation_request"}


def _ensure_tool() -> Path:
    python = TOOL_VENV / "bin" / "python"
    probe = [str(python), "-c", "import spid_cie_oidc, django, pydantic, bootstrap_italia_template"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOL_VENV)], check=True)
        subprocess.run([str(TOOL_VENV / "bin" / "pip"), "install", "-q", *REFERENCE], check=True, timeout=900)
    return python


class Federation2Hop:
    """The twin (anchor, intermediate, OP) and the Comune's Entity Configuration on one local port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.client_id = f"{self.base}/rp"
        key, cert = key_and_cert("sp-cremona")
        tenant = Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                        ipa_code="c_d150", spid=SpidConfig(
                            entity_id="https://sportello.comune.cremona.it/spid",  # type: ignore[arg-type]
                            signing_key=SecretStr(key), signing_certificate=cert,
                            cie=CieConfig(client_id=self.client_id, provider=f"{self.base}/op",  # type: ignore[arg-type]
                                          trust_anchor=f"{self.base}/ta",  # type: ignore[arg-type]
                                          trust_anchor_jwks=json.dumps({"keys": [public_jwk(key_and_cert("ta")[0])]}),
                                          federation_key=SecretStr(key_and_cert("cie-fed")[0]),
                                          signing_key=SecretStr(key_and_cert("cie-core")[0]),
                                          encryption_key=SecretStr(key_and_cert("cie-enc")[0]))))
        self.rp = cie.relying_party(tenant)
        self.federation = Federation(base=self.base, ta_key=key_and_cert("ta")[0],
                                     op_federation_key=key_and_cert("op-fed")[0],
                                     op_core_key=key_and_cert("op-core")[0], members=(self.client_id,),
                                     intermediate=True, ia_key=key_and_cert("ia")[0])
        self.twin = CieOpTwin(self.federation, lambda url: httpx.get(url, timeout=10).text)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if Request(environ).path.rstrip("/") == "/rp" + WELL_KNOWN:
            response = Response(cie.entity_configuration(self.rp), mimetype=STATEMENT_MEDIA_TYPE)
            return response(environ, start_response)
        return self.twin(environ, start_response)


@pytest.fixture(scope="module")
def served() -> Iterator[Federation2Hop]:
    port = free_port()
    app = Federation2Hop(port)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _job(served: Federation2Hop) -> dict[str, Any]:
    rp = served.rp
    op = {"issuer": served.federation.provider, **served.federation.endpoints()}
    url, _ = cie.authorization_request(rp, op, level=2)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    token_form = cie.token_request(rp, op, code="a-code-from-the-op", pending=cie.PendingCie(
        state="s" * 32, nonce="n" * 32, code_verifier="v" * 64, level=2))
    # the reference OP's refresh tokens are JWTs (its schemas say so): one shaped like them
    refresh = sign_jwt({"iss": op["issuer"], "sub": rp.client_id, "iat": 1, "exp": 2}, key_and_cert("op-core")[0])
    return {"rp": rp.client_id, "op": served.federation.provider, "trust_anchor": served.federation.trust_anchor,
            "op_path_length": 3, "authorization_query": query, "token_form": token_form,
            "refresh_form": cie.refresh_request(rp, op, refresh_token=refresh),
            "revocation_form": cie.revocation_request(rp, op, token=refresh)}


def test_the_reference_implementation_accepts_our_rp_and_the_twin_federation(served: Federation2Hop) -> None:
    python = _ensure_tool()
    done = subprocess.run([str(python), str(CHECK)], input=json.dumps(_job(served)), capture_output=True,
                          text=True, timeout=120, cwd=str(CHECK.parent))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) == EXPECTED, report
    failures = {name: outcome for name, outcome in report.items() if outcome != "ok"}
    assert not failures, json.dumps(failures, indent=1)


def test_the_reference_check_can_fail(served: Federation2Hop) -> None:
    """A request object with `sub` and a plain-string scope the reference cannot read must be reported."""
    python = _ensure_tool()
    job = _job(served)
    rp = served.rp
    claims = {"iss": rp.client_id, "sub": rp.client_id, "aud": [served.federation.provider], "iat": 1,
              "client_id": rp.client_id, "response_type": "code", "scope": "openid", "redirect_uri": rp.redirect_uri,
              "state": "short", "nonce": "n" * 32, "code_challenge": "c", "code_challenge_method": "plain"}
    job["authorization_query"]["request"] = sign_jwt(claims, rp.signing_key)
    job["token_form"]["client_assertion"] = sign_jwt({"iss": rp.client_id, "sub": "https://other.example.it",
                                                      "aud": "x", "iat": 1, "exp": 2}, rp.signing_key)
    done = subprocess.run([str(python), str(CHECK)], input=json.dumps(job), capture_output=True, text=True,
                          timeout=120, cwd=str(CHECK.parent))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rp_trust_chain"] == "ok" and report["op_trust_chain"] == "ok"
    assert report["authorization_request"].startswith("error") and report["token_request"].startswith("error")


# -- our RP against the reference's own trust anchor and CIE OP (Django, a real server) -----------------
CITIZEN = "BNCGLI90D45D150M"
_HIDDEN = __import__("re").compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"')


@pytest.fixture(scope="module")
def reference_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any], Any]]:
    python = _ensure_tool()
    work = tmp_path_factory.mktemp("reference-federation")
    port, rp_port = free_port(), free_port()
    client_id = f"http://127.0.0.1:{rp_port}/rp"
    job = {"work": str(work), "port": port, "rp": client_id, "rp_jwks": [public_jwk(key_and_cert("cie-fed")[0])],
           "fiscal_number": f"TINIT-{CITIZEN}"}
    log = (work / "server.log").open("w")
    server = subprocess.Popen([str(python), str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=log, text=True, cwd=str(work))
    try:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps(job))
        server.stdin.close()
        first = server.stdout.readline()
        assert first, (work / "server.log").read_text()[-3000:]
        started = json.loads(first)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/.well-known/openid-federation", timeout=2).status_code == 200,
                 timeout=60, interval=0.3, what="the reference trust anchor")
        yield base, {"client_id": client_id, "rp_port": rp_port, **started}, work
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _reference_rp(base: str, info: dict[str, Any], tmp_path: Path) -> Any:
    from services.spid.adapters.oidc_http import HttpOidc
    from services.spid.application import LoginApplication
    from sportello.db import Database
    from sportello.migrate import upgrade
    from sportello.tenants import TenantRegistry
    from sportello.tokens import SigningKey, TokenIssuer

    key, cert = key_and_cert("sp-cremona")
    tenant = Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                    ipa_code="c_d150", spid=SpidConfig(
                        entity_id="https://sportello.comune.cremona.it/spid",  # type: ignore[arg-type]
                        signing_key=SecretStr(key), signing_certificate=cert,
                        cie=CieConfig(client_id=info["client_id"], provider=f"{base}/oidc/op",  # type: ignore[arg-type]
                                      trust_anchor=base,  # type: ignore[arg-type]
                                      trust_anchor_jwks=json.dumps(info["trust_anchor_jwks"]), offline_access=True,
                                      federation_key=SecretStr(key_and_cert("cie-fed")[0]),
                                      signing_key=SecretStr(key_and_cert("cie-core")[0]),
                                      encryption_key=SecretStr(key_and_cert("cie-enc")[0]))))
    url = f"sqlite:///{tmp_path / 'spid.sqlite3'}"
    upgrade("spid", url)

    class NoSaml:
        def fetch(self, location: str) -> bytes:
            raise OSError("no SAML here")

    return LoginApplication(Database(url), TenantRegistry({"cremona": tenant}),
                            TokenIssuer(SigningKey(key_and_cert("gateway")[0])), NoSaml(), oidc=HttpOidc())


def _serve_entity_configuration(app: Any, port: int) -> Any:
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if Request(environ).path == "/rp" + WELL_KNOWN:
            response = Response(app.cie_entity_configuration("cremona"), mimetype=STATEMENT_MEDIA_TYPE)
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_our_rp_logs_in_at_the_reference_op_through_the_reference_anchor(
        reference_federation: tuple[str, dict[str, Any], Path], tmp_path: Path) -> None:
    from sportello.tokens import TokenVerifier
    base, info, work = reference_federation
    app = _reference_rp(base, info, tmp_path)
    rp_server = _serve_entity_configuration(app, info["rp_port"])
    try:
        chain = app.cie_chain("cremona")  # their OP's chain, verified with the pinned anchor keys
        assert chain.trust_anchor == base and len(chain.statements) == 3
        url = app.start_cie_login("cremona", level=1)["url"]  # the reference issues refresh tokens to L1 only
        with httpx.Client(timeout=30, follow_redirects=False) as browser:
            page = browser.get(url)
            assert page.status_code == 200, (page.status_code, (work / "server.log").read_text()[-3000:])
            hidden = dict(_HIDDEN.findall(page.text))
            assert "authz_request_object" in hidden, page.text[:2000]
            logged = browser.post(f"{base}/oidc/op/authorization", data={
                "username": info["username"], "password": info["password"], **hidden})
            assert logged.status_code == 302, (logged.status_code, logged.text[:1500])
            consent_url = httpx.URL(base).join(logged.headers["Location"])
            consent = browser.get(consent_url)
            assert consent.status_code == 200, consent.text[:1500]
            back = browser.post(consent_url, data={"agree": "True", **dict(_HIDDEN.findall(consent.text))})
            assert back.status_code == 302, (back.status_code, back.text[:1500])
        location = back.headers["Location"]
        assert location.startswith(info["client_id"] + "/callback?"), location
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        done = app.complete_cie_login("cremona", state=query["state"], code=query["code"], issuer=query.get("iss"))
        tokens = app.exchange_code("cremona", done["code"])
        principal = TokenVerifier(app.tokens.jwks()).verify(tokens["access_token"])
        # we ask "SpidL1 SpidL2 SpidL3" (preference order); the reference OP grants the last one listed
        assert principal.subject == CITIZEN and principal.level in (1, 2, 3)
        def provider_tokens() -> dict[str, Any]:
            with app.db.engine.connect() as connection:
                sealed = connection.execute(sa.text("select provider_tokens from spid_sessions")).scalar_one()
            return cie.unseal(cie.relying_party(app.tenants.get("cremona")), sealed)

        issued = provider_tokens()
        assert issued["refresh_token"] and issued["access_token"]  # offline_access granted with consent
        again = app.refresh("cremona", tokens["refresh_token"])  # refresh_token grant at their OP
        assert provider_tokens()["access_token"] != issued["access_token"]  # a new access token from their OP
        out = app.logout("cremona", CITIZEN, again["refresh_token"])
        assert out["revoked"] is True and out["provider_revoked"] is True  # their revocation endpoint said 200
    finally:
        rp_server.shutdown()
        app.db.dispose()
