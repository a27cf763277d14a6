"""A login platform for tests: `spid` + gateway (real processes on RabbitMQ/PostgreSQL) + the SPID IdP
twin + the CIE OP/trust-anchor twin.

Why a helper: the e2e login tests and the spid RPC integration tests need the same processes, on
free ports, with tenant files in a temporary folder pointing at the twins. `browser_login` plays
the browser: gateway login -> twin SSO -> pick a citizen (or cancel) -> POST the Response to the
ACS; `cie_browser_login` the same through the CIE OP twin to the redirect_uri.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from nameko.standalone.rpc import ClusterRpcProxy

from sandbox.secrets import generate
from tests.support.processes import ROOT, ServiceProcess, free_port, service_env, wait_for
from tests.support.servers import Databases, isolated_vhost, require_postgresql, require_rabbitmq

OTHER_TENANT = "lodi"
_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass
class LoginPlatform:
    gateway: str
    idp: str
    cie: str
    amqp_uri: str
    secrets_dir: Path
    database_url: str
    processes: list[ServiceProcess] = field(default_factory=list)

    def url(self, path: str, tenant: str = "cremona") -> str:
        return f"{self.gateway}/v1/tenants/{tenant}{path}"

    def rpc(self) -> Any:
        return ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=20)


def _tenant_files(folder: Path, gateway_port: int, idp_port: int, cie_port: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "sandbox" / "tenants" / "cremona.yaml").read_text(encoding="utf-8")
    text = (text.replace("127.0.0.1:8080", f"127.0.0.1:{gateway_port}")
            .replace("127.0.0.1:8106", f"127.0.0.1:{idp_port}").replace("127.0.0.1:8107", f"127.0.0.1:{cie_port}"))
    (folder / "cremona.yaml").write_text(text, encoding="utf-8")
    cremona = yaml.safe_load(text)
    other = {
        "id": OTHER_TENANT, "name": "Comune di Lodi", "fiscal_code": "84507570152", "istat_code": "098031",
        "ipa_code": "c_e648",
        "spid": {**{k: v for k, v in cremona["spid"].items() if k != "cie"}, "entity_id": "https://sportello.comune.lodi.it/spid",
                 "acs_url": f"http://127.0.0.1:{gateway_port}/v1/tenants/{OTHER_TENANT}/auth/spid/acs",
                 "slo_url": f"http://127.0.0.1:{gateway_port}/v1/tenants/{OTHER_TENANT}/auth/spid/slo",
                 "service_name": "Sportello del Comune di Lodi", "organization_url": "https://www.comune.lodi.it/"},
    }
    (folder / f"{OTHER_TENANT}.yaml").write_text(yaml.safe_dump(other, sort_keys=False), encoding="utf-8")


@contextmanager
def login_platform(work: Path, amqp_uri: str, databases: Databases) -> Iterator[LoginPlatform]:
    """Start spid, gateway and the IdP twin; stop them (and only them) afterwards."""
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    gateway_port, idp_port, cie_port = free_port(), free_port(), free_port()
    tenants_dir = work / "tenants"
    _tenant_files(tenants_dir, gateway_port, idp_port, cie_port)
    gateway = f"http://127.0.0.1:{gateway_port}"
    idp = f"http://127.0.0.1:{idp_port}"
    cie = f"http://127.0.0.1:{cie_port}"
    metadata_urls = ",".join(f"{gateway}/v1/tenants/{t}/auth/spid/metadata" for t in ("cremona", OTHER_TENANT))
    twin_env = {**os.environ, "PYTHONPATH": str(ROOT), "SANDBOX_SPID_IDP_PORT": str(idp_port),
                "SPORTELLO_SECRETS_DIR": str(secrets_dir), "SANDBOX_SPID_SP_METADATA": metadata_urls}
    cie_env = {**os.environ, "PYTHONPATH": str(ROOT), "SANDBOX_CIE_OP_PORT": str(cie_port),
               "SPORTELLO_SECRETS_DIR": str(secrets_dir), "SANDBOX_CIE_RPS": f"{gateway}/v1/tenants/cremona/auth/cie",
               "SANDBOX_CIE_INTERMEDIATE": "1"}  # the OP under an intermediate: the RP resolves a two-hop chain
    twins = []
    for module, env in (("sandbox.spid_idp", twin_env), ("sandbox.cie_op", cie_env)):
        with (work / f"{module}.log").open("ab") as twin_log:
            twins.append(subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=twin_log,
                                          stderr=subprocess.STDOUT))
    database_url = databases.url("spid")
    platform = LoginPlatform(gateway, idp, cie, amqp_uri, secrets_dir, database_url)
    try:
        env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data", SPORTELLO_DATABASE_URL=database_url)
        platform.processes.append(ServiceProcess("spid", env, work).start())
        gateway_env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                                  SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}")
        platform.processes.append(ServiceProcess("gateway", gateway_env, work).start())

        def ready() -> bool:
            try:
                metadata = httpx.get(platform.url("/auth/spid/metadata"), timeout=5)
                twin_up = httpx.get(f"{idp}/metadata", timeout=2)
                cie_up = httpx.get(f"{cie}/ta/.well-known/openid-federation", timeout=2)
            except httpx.HTTPError:
                return False
            return metadata.status_code == 200 and twin_up.status_code == 200 and cie_up.status_code == 200

        wait_for(ready, timeout=90, interval=0.5, what="spid, gateway, the SPID IdP twin and the CIE OP twin")
        yield platform
    finally:
        for process in platform.processes:
            process.stop()
        for twin in twins:
            twin.terminate()
            twin.wait(timeout=10)


@dataclass
class BrowserResult:
    acs: httpx.Response  # the gateway's answer to the posted SAML Response
    fields: dict[str, str]  # what the browser posted to the ACS (SAMLResponse, RelayState)


def post_form(page: str) -> tuple[str, dict[str, str]]:
    """(action, fields) of an auto-posting HTML form as the twin and the gateway write them."""
    action = _ACTION.search(page)
    assert action, page[:300]
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in _INPUT.findall(page)}


def browser_login(platform: LoginPlatform, fiscal_code: str, *, tenant: str = "cremona", level: int = 2,
                  binding: str = "redirect", action: str = "login", error: int | None = None) -> BrowserResult:
    """What a browser does: start at the gateway, authenticate at the twin, come back to the ACS."""
    with httpx.Client(timeout=20, follow_redirects=False) as browser:
        start = browser.get(platform.url("/auth/spid/login", tenant),
                            params={"idp": platform.idp, "level": str(level), "binding": binding})
        if binding == "redirect":
            assert start.status_code == 302, start.text
            assert start.headers["Location"].startswith(f"{platform.idp}/sso?SAMLRequest=")
            sso = browser.get(start.headers["Location"])
        else:
            assert start.status_code == 200 and start.headers["content-type"].startswith("text/html"), start.text
            url, fields = post_form(start.text)
            assert url == f"{platform.idp}/sso"
            sso = browser.post(url, data=fields)
        assert sso.status_code == 200, sso.text
        choice: dict[str, str] = {"ticket": sso.headers["X-Spid-Ticket"], "fiscal_code": fiscal_code,
                                  "action": action}
        if error is not None:
            choice["error"] = str(error)
        answer = browser.post(f"{platform.idp}/login", data=choice)
        assert answer.status_code == 200, answer.text
        acs_url, fields = post_form(answer.text)
        assert acs_url == platform.url("/auth/spid/acs", tenant)
        return BrowserResult(browser.post(acs_url, data=fields), fields)


def cie_browser_login(platform: LoginPlatform, fiscal_code: str, *, level: int = 2,
                      action: str = "login") -> httpx.Response:
    """Gateway CIE login -> the OP twin's picker -> back to the gateway's redirect_uri (its answer)."""
    with httpx.Client(timeout=30, follow_redirects=False) as browser:
        start = browser.get(platform.url("/auth/cie/login"), params={"level": str(level)})
        assert start.status_code == 302, start.text
        assert start.headers["Location"].startswith(f"{platform.cie}/op/authorization?")
        picker = browser.get(start.headers["Location"])
        assert picker.status_code == 200, picker.text
        back = browser.post(f"{platform.cie}/op/login", data={"ticket": picker.headers["X-Cie-Ticket"],
                                                               "fiscal_code": fiscal_code, "action": action})
        assert back.status_code == 302, back.text
        assert back.headers["Location"].startswith(platform.url("/auth/cie/callback?"))
        return browser.get(back.headers["Location"])


# -- the SP alone, for AgID's spid-sp-test ------------------------------------------------------------
SPID_SP_TEST_IDP = "https://localhost:8443"  # the entity id of spid-sp-test's own fake IdP


@dataclass
class RunningSp:
    gateway: str  # where the gateway listens on this machine
    public: str  # the origin of the SP's https URLs in its metadata (entity id, ACS, SLO)
    processes: list[ServiceProcess] = field(default_factory=list)

    def url(self, path: str, tenant: str = "cremona") -> str:
        return f"{self.gateway}/v1/tenants/{tenant}{path}"


@contextmanager
def running_sp(work: Path, amqp_uri: str, databases: Databases, idp_metadata: Path) -> Iterator[RunningSp]:
    """`spid` and the gateway only (real processes), Cremona configured as in production.

    Why not `login_platform`: spid-sp-test checks the SP's metadata with the public-SP profile, so
    the entity id, ACS and SLO must be https without a port, i.e. the defaults derived from the
    entity id (the gateway behind its TLS front); and the only IdP is the tool's own, whose
    metadata (`spid_sp_test --idp-metadata`) is read from a file as a tenant may configure it.
    """
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    gateway_port = free_port()
    tenants_dir = work / "tenants"
    tenants_dir.mkdir(parents=True, exist_ok=True)
    cremona = yaml.safe_load((ROOT / "sandbox" / "tenants" / "cremona.yaml").read_text(encoding="utf-8"))
    spid = {k: v for k, v in cremona["spid"].items() if k not in {"acs_url", "slo_url", "cie"}}
    spid["idp_metadata"] = [str(idp_metadata)]
    cremona["spid"] = spid
    (tenants_dir / "cremona.yaml").write_text(yaml.safe_dump(cremona, sort_keys=False), encoding="utf-8")
    entity = str(spid["entity_id"])
    sp = RunningSp(f"http://127.0.0.1:{gateway_port}", entity[:entity.index("/", len("https://"))])
    try:
        env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                          SPORTELLO_DATABASE_URL=databases.url("spid"))
        sp.processes.append(ServiceProcess("spid", env, work).start())
        gateway_env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                                  SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}")
        sp.processes.append(ServiceProcess("gateway", gateway_env, work).start())

        def ready() -> bool:
            try:
                return httpx.get(sp.url("/auth/spid/metadata"), timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=90, interval=0.5, what="spid and the gateway serving the SP metadata")
        yield sp
    finally:
        for process in sp.processes:
            process.stop()


@contextmanager
def isolated_login_platform(work: Path) -> Iterator[LoginPlatform]:
    """`login_platform` on a vhost and databases of its own, removed afterwards (e2e modules)."""
    require_rabbitmq()
    require_postgresql()
    databases = Databases()
    try:
        with isolated_vhost() as amqp_uri, login_platform(work, amqp_uri, databases) as running:
            yield running
    finally:
        databases.drop_all()
