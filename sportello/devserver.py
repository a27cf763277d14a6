"""`make run`: the whole platform on one machine — every service, the gateway and the twins.

Why: a newcomer must see Sportello working with one command. This generates throw-away sandbox
secrets, starts each component as its own process (as in production), waits until the gateway
reports every service healthy over RPC, prints where to start, and on Ctrl-C stops everything.
Plain subprocess supervision: no eventlet here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("SPORTELLO_RUN_DIR", ROOT / ".run"))
SERVICES = ("anpr", "pagopa", "spid", "appio")


def sandbox_twins() -> list[tuple[str, int]]:
    """Every twin under sandbox/: a package with a `__main__.py` and a `PORT` in its `__init__.py`."""
    import importlib

    twins = []
    for main in sorted((ROOT / "sandbox").glob("*/__main__.py")):
        module = f"sandbox.{main.parent.name}"
        twins.append((module, int(importlib.import_module(module).PORT)))
    return twins


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Platform:
    env: dict[str, str]
    log_dir: Path
    gateway_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, module_args: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *module_args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )

    def dead(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.poll() is not None]

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.gateway_url}/v1/health", timeout=5) as reply:  # noqa: S310
                return json.loads(reply.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def stop(self, grace: float = 15.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def platform_env(base: dict[str, str], run_dir: Path) -> dict[str, str]:
    env = dict(base)
    env.setdefault("SPORTELLO_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")  # the local broker's own default
    env.setdefault("SPORTELLO_TENANTS_DIR", str(ROOT / "sandbox" / "tenants"))
    env.setdefault("SPORTELLO_SECRETS_DIR", str(run_dir / "secrets"))
    env.setdefault("SPORTELLO_DATA_DIR", str(run_dir / "data"))
    env.setdefault("SPORTELLO_GATEWAY_ADDRESS", "127.0.0.1:8080")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def main() -> int:
    from sandbox.secrets import generate

    env = platform_env(dict(os.environ), RUN_DIR)
    generate(Path(env["SPORTELLO_SECRETS_DIR"]))
    log_dir = RUN_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    platform = Platform(env, log_dir, f"http://{env['SPORTELLO_GATEWAY_ADDRESS']}")
    stopping = False

    def _interrupt(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    twins = sandbox_twins()
    for module, _port in twins:
        platform.start(f"twin-{module.rsplit('.', 1)[-1]}", [module])
    for service in SERVICES:
        platform.start(service, ["sportello.edge.run", service])
    platform.start("gateway", ["sportello.edge.run", "gateway"])
    print(f"Starting Sportello: {len(platform.processes)} processes, logs in {log_dir}", flush=True)

    deadline = time.monotonic() + float(env.get("SPORTELLO_START_TIMEOUT", "90"))
    healthy = False
    while not stopping and time.monotonic() < deadline:
        if platform.dead():
            break
        report = platform.health()
        if report and report.get("status") == "ok" and all(_port_open(port) for _module, port in twins):
            healthy = True
            break
        time.sleep(0.5)
    if not healthy:
        dead = platform.dead()
        print("Sportello did not become healthy"
              + (f": {', '.join(dead)} exited (see {log_dir}/<name>.log)" if dead else " in time"), file=sys.stderr)
        platform.stop()
        return 1

    url = platform.gateway_url
    print(f"""
Sportello is running — all four services healthy over RPC.
  gateway   {url}
  twins     {", ".join(f"{m.rsplit('.', 1)[-1]} :{p}" for m, p in twins) or "none yet"}
  OpenAPI   {url}/v1/openapi.yaml     events (AsyncAPI)  {url}/v1/asyncapi.json
  portal    {url}/portal/     console (operators)  {url}/console/     (built by `make web`)
  try       curl -s {url}/v1/health
  logs      {log_dir}/<component>.log
Ctrl-C stops everything.""", flush=True)
    while not stopping:
        dead = platform.dead()
        if dead:
            print(f"{', '.join(dead)} exited unexpectedly (see {log_dir}); stopping", file=sys.stderr)
            platform.stop()
            return 1
        time.sleep(0.5)
    print("Stopping Sportello…", flush=True)
    platform.stop()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
