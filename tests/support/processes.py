"""Service processes started exactly as production starts them: `python -m sportello.edge.run X`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on the loopback right now (servers under test bind to it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class ServiceProcess:
    def __init__(self, component: str, env: dict[str, str], log_dir: Path) -> None:
        self.component = component
        self.env = env
        self.log_path = log_dir / f"{component.rsplit(':', 1)[-1]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sportello.edge.run", self.component], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.terminate():
            self.wait_stopped()

    def terminate(self) -> bool:
        """Ask for a graceful stop (SIGTERM) without waiting; False if it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        return True

    def wait_stopped(self, timeout: float = 15) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_all(processes: Iterable[ServiceProcess]) -> None:
    """Stop several processes with their graceful stops overlapping (a few seconds each, not the sum)."""
    asked = [process for process in processes if process.terminate()]
    for process in asked:
        process.wait_stopped()


def service_env(amqp_uri: str, tenants_dir: Path, secrets_dir: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPORTELLO_")}
    env.update({
        "SPORTELLO_AMQP_URI": amqp_uri,
        "SPORTELLO_TENANTS_DIR": str(tenants_dir),
        "SPORTELLO_SECRETS_DIR": str(secrets_dir),
        "SPORTELLO_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env
