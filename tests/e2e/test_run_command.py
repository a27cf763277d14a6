"""`make run`'s platform: starts every component, reports healthy, and Ctrl-C stops it all cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT, free_port, wait_for
from tests.support.servers import isolated_vhost, require_rabbitmq

pytestmark = pytest.mark.e2e


def _component_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "sportello.edge.run"], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def test_run_command_brings_the_platform_up_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    require_rabbitmq()
    port = free_port()
    with isolated_vhost() as amqp_uri:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPORTELLO_")}
        env.update({"SPORTELLO_AMQP_URI": amqp_uri, "SPORTELLO_RUN_DIR": str(tmp_path / "run"),
                    "SPORTELLO_GATEWAY_ADDRESS": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)})
        before = set(_component_pids())
        proc = subprocess.Popen([sys.executable, "-m", "sportello.devserver"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        output: list[str] = []
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                output.append(line)
                if line.startswith("Ctrl-C stops everything"):
                    break
            text = "".join(output)
            assert "Sportello is running — all four services healthy over RPC." in text, text
            assert f"http://127.0.0.1:{port}/v1/openapi.yaml" in text
            assert f"curl -s http://127.0.0.1:{port}/v1/health" in text
            health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            spec = httpx.get(f"http://127.0.0.1:{port}/v1/openapi.yaml", timeout=10)
            assert spec.status_code == 200 and spec.text.startswith("openapi: 3.")
            started = set(_component_pids()) - before
            assert len(started) == 5  # four services and the gateway
            assert sorted(p.name for p in (tmp_path / "run" / "secrets").iterdir())  # sandbox secrets made
        finally:
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert "Stopped." in rest
        wait_for(lambda: not (set(_component_pids()) - before), timeout=10, what="every component process gone")
