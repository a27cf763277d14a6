"""The operator CLI, run as the installed `sportello` command (a real process each time).

tenant validate / check need no broker (check talks to local HTTP servers standing in for the
platforms); dead-letters list / replay go over RPC to a real anpr process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox.secrets import generate
from sportello.bus import EVENTS_EXCHANGE, ConfirmingPublisher
from sportello.contracts.pagopa import PaymentCompleted
from tests.deploy.conftest import Running, free_port
from tests.support.processes import ROOT, wait_for

CREMONA = ROOT / "sandbox" / "tenants" / "cremona.yaml"


def sportello(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = shutil.which("sportello", path=str(Path(sys.executable).parent))
    assert command, "the `sportello` console script is missing: pip install -e ."
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SPORTELLO_")}
    variables.update(env or {})
    return subprocess.run([command, *args], capture_output=True, text=True, env=variables, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-secrets")
    generate(folder)
    return folder


# --- tenant validate --------------------------------------------------------------------------------

def test_tenant_validate_accepts_the_demo_tenant(secrets_dir: Path) -> None:
    result = sportello("tenant", "validate", str(CREMONA), "--secrets-dir", str(secrets_dir))
    assert result.returncode == 0, result.stderr
    assert "tenant 'cremona' (Comune di Cremona) is valid" in result.stdout
    assert "pagopa, appio, spid, pdnd" in result.stdout


def test_tenant_validate_names_the_bad_field(secrets_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "esempio.yaml"
    broken.write_text(CREMONA.read_text().replace('fiscal_code: "00297960197"', 'fiscal_code: "00297960198"'))
    result = sportello("tenant", "validate", str(broken), "--secrets-dir", str(secrets_dir))
    assert result.returncode == 78
    assert "esempio.yaml: fiscal_code:" in result.stderr


def test_tenant_validate_lists_every_missing_secret(tmp_path: Path) -> None:
    partial = tmp_path / "secrets"
    generate(partial)
    (partial / "CREMONA_PDND_PRIVATE_KEY").unlink()
    (partial / "CREMONA_GPD_SUBSCRIPTION_KEY").unlink()
    result = sportello("tenant", "validate", str(CREMONA), env={"SPORTELLO_SECRETS_DIR": str(partial)})
    assert result.returncode == 78
    assert re.findall(r"secret (\w+) is missing", result.stderr) == ["CREMONA_GPD_SUBSCRIPTION_KEY",
                                                                    "CREMONA_PDND_PRIVATE_KEY"]


def test_tenant_validate_missing_file() -> None:
    result = sportello("tenant", "validate", "/nonexistent/x.yaml")
    assert result.returncode == 78 and "no such file" in result.stderr


# --- tenant check -------------------------------------------------------------------------------------

class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401 if "token" in self.path else 404)  # any answer proves reachability
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def platform_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _tenant_pointing_at(tmp_path: Path, up: int, down: int) -> Path:
    """The demo tenant with every platform on the live server, except App IO on a closed port."""
    text = CREMONA.read_text()
    text = re.sub(r"127\.0\.0\.1:81(0[1-24-9])\b", f"127.0.0.1:{up}", text)
    text = re.sub(r"127\.0\.0\.1:8103\b", f"127.0.0.1:{down}", text)
    folder = tmp_path / "tenants"
    folder.mkdir()
    (folder / "cremona.yaml").write_text(text)
    return folder


def test_tenant_check_reports_each_platform(platform_server: int, secrets_dir: Path, tmp_path: Path) -> None:
    closed = free_port()
    tenants = _tenant_pointing_at(tmp_path, platform_server, closed)
    env = {"SPORTELLO_TENANTS_DIR": str(tenants), "SPORTELLO_SECRETS_DIR": str(secrets_dir)}
    result = sportello("tenant", "check", "cremona", "--timeout", "3", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and "App IO" in failed[0] and f":{closed}/" in failed[0]
    assert any(line.startswith("ok") and "PDND token" in line and "HTTP 401" in line for line in lines)
    assert any(line.startswith("ok") and "pagopa GPD" in line for line in lines)
    total = sum(1 for line in lines if line.startswith(("ok", "FAIL")))
    assert lines[-1] == f"{total - 1}/{total} platform endpoints reachable for tenant 'cremona'"


def test_tenant_check_all_reachable_and_unknown_tenant(platform_server: int, secrets_dir: Path,
                                                       tmp_path: Path) -> None:
    tenants = _tenant_pointing_at(tmp_path, platform_server, platform_server)
    env = {"SPORTELLO_TENANTS_DIR": str(tenants), "SPORTELLO_SECRETS_DIR": str(secrets_dir)}
    assert sportello("tenant", "check", "cremona", env=env).returncode == 0
    unknown = sportello("tenant", "check", "nowhere", env=env)
    assert unknown.returncode == 78 and "no tenant 'nowhere'" in unknown.stderr


# --- dead letters over RPC ------------------------------------------------------------------------------

def _letters(running: Running, *extra: str) -> list[dict[str, object]]:
    result = sportello("dead-letters", "list", "anpr", "--json", *extra, env={"SPORTELLO_AMQP_URI": running.amqp_uri})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.integration
def test_dead_letters_list_and_replay(running: Running) -> None:
    marker = str(uuid.uuid4())
    publisher = ConfirmingPublisher(running.amqp_uri)
    try:  # a malformed event for anpr's payment handler: dead-lettered at once, with the reason
        publisher.publish("{broken " + marker, exchange=EVENTS_EXCHANGE, routing_key=PaymentCompleted.event_type,
                          message_id=marker)
    finally:
        publisher.close()
    letters = wait_for(lambda: [x for x in _letters(running) if x["event_id"] is None and x["replay_count"] == 0],
                       timeout=30, interval=0.5, what="the dead letter listed")
    letter = letters[-1]
    assert letter["queue"] == "anpr.on_payment_completed"
    table = sportello("dead-letters", "list", "anpr", env={"SPORTELLO_AMQP_URI": running.amqp_uri})
    assert table.returncode == 0 and re.search(rf"^\s*{letter['id']}\s", table.stdout, flags=re.M)

    replay = sportello("dead-letters", "replay", "anpr", str(letter["id"]),
                       env={"SPORTELLO_AMQP_URI": running.amqp_uri})
    assert replay.returncode == 0, replay.stderr
    assert f"dead letter {letter['id']} replayed into anpr.on_payment_completed (replays: 1)" in replay.stdout
    assert letter["id"] not in [x["id"] for x in _letters(running)], "no longer waiting once replayed"
    replayed = [x for x in _letters(running, "--all") if x["id"] == letter["id"]]
    assert replayed and replayed[0]["replay_count"] == 1 and replayed[0]["replayed_at"]


@pytest.mark.integration
def test_dead_letters_errors_are_clear(running: Running) -> None:
    missing = sportello("dead-letters", "replay", "anpr", "999999", env={"SPORTELLO_AMQP_URI": running.amqp_uri})
    assert missing.returncode == 1 and "not_found" in missing.stderr.replace(".", "_").lower()
    no_broker = sportello("dead-letters", "list", "anpr")
    assert no_broker.returncode == 78 and "SPORTELLO_AMQP_URI is not set" in no_broker.stderr
    bad_service = sportello("dead-letters", "list", "nosuch")
    assert bad_service.returncode == 2


# --- probe -------------------------------------------------------------------------------------------------

def test_probe_answers_for_a_live_process_and_fails_for_none(running: Running) -> None:
    port = running.metrics["anpr"].rsplit(":", 1)[1]
    assert sportello("probe", env={"SPORTELLO_METRICS_ADDRESS": f"0.0.0.0:{port}"}).returncode == 0
    down = sportello("probe", env={"SPORTELLO_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert down.returncode == 1 and "healthz" in down.stderr
    assert sportello("probe").returncode == 78


def test_tenant_add_writes_a_valid_file_and_refuses_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "tenants"
    made = sportello("tenant", "add", "lodi", "--name", "Comune di Lodi", "--fiscal-code", "00314470196",
                     "--istat-code", "098031", "--ipa-code", "c_e648", "--into", str(folder))
    assert made.returncode == 0, made.stderr
    written = folder / "lodi.yaml"
    assert "tenant validate" in made.stdout and written.is_file()
    checked = sportello("tenant", "validate", str(written), "--secrets-dir", str(tmp_path))
    assert checked.returncode == 0, checked.stderr
    again = sportello("tenant", "add", "lodi", "--name", "Comune di Lodi", "--fiscal-code", "00314470196",
                      "--istat-code", "098031", "--ipa-code", "c_e648", "--into", str(folder))
    assert again.returncode == 1 and "already exists" in again.stderr
    same_code = sportello("tenant", "add", "lodi-bis", "--name", "Comune di Lodi", "--fiscal-code", "00314470196",
                          "--istat-code", "098031", "--ipa-code", "c_e648", "--into", str(folder))
    assert same_code.returncode == 1 and "fiscal code 00314470196 already exists" in same_code.stderr
    bad = sportello("tenant", "add", "crema", "--name", "Comune di Crema", "--fiscal-code", "12345678901",
                    "--istat-code", "019035", "--ipa-code", "c_d142", "--into", str(folder))
    assert bad.returncode == 78 and "fiscal_code" in bad.stderr
    assert not (folder / "crema.yaml").exists()
