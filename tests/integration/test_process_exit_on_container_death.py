"""A service process whose nameko container dies must exit, non-zero and within seconds, so that
Kubernetes (or compose, or `make run`) restarts it: a process left up with a dead container
serves nothing while its /healthz still answers.

Seen in the resilience runs: appio's container was killed and the process stayed up. Two ways
the kill itself never finished, each reproduced here on a real process and a real RabbitMQ:
- with the broker unreachable, nameko's `QueueConsumer.kill()` waits for a consume loop that is
  inside kombu's endless reconnection and never sees `should_stop` (`sportello/edge/consumers.py`);
- in the gateway, the read-model feed's `kill()` waited for its consumer's cancellation, which the
  killed consume loop never performs, even with the broker up (`gateway/feed.py`).
And a kill that completes without an error made `runner.wait()` return normally: status 0.
`sportello/edge/run.py` now exits 70 after any container death, and ends the process after a
grace period if the kill still hangs for a reason nobody foresaw (the last test).

The components are `tests/support/dying_service.py`: a real service / the real gateway, plus an
RPC that kills the container on demand.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from tests.support.processes import ServiceProcess, free_port, service_env, wait_for

pytestmark = pytest.mark.integration

EX_SOFTWARE = 70  # sportello.edge.run's status after a container death (not imported: it monkey-patches)
GRACE_SECONDS = 5.0  # sportello.edge.run.CONTAINER_DEATH_GRACE_SECONDS
EXIT_WITHIN_SECONDS = GRACE_SECONDS + 3  # from the death; a kill that completes took 0.9-2.0 s here
SERVICE = "tests.support.dying_service:DyingService"
GATEWAY = "tests.support.dying_service:DyingGateway"


class BrokerLink:
    """A TCP relay between a service and RabbitMQ; `cut()` drops its connections and refuses new
    ones: the broker, as that one process sees it, is gone (the shared broker keeps running)."""

    def __init__(self, amqp_uri: str) -> None:
        parts = urlsplit(amqp_uri)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self.amqp_uri = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}"))
        self._sockets: list[socket.socket] = []
        self._open = True
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()
                    continue
                upstream = socket.create_connection(self._target)
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            self._open = False
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets = []

    def close(self) -> None:
        self.cut()
        self._listener.close()


@dataclass
class Scenario:
    process: ServiceProcess
    service: str  # its nameko name: where `die` is sent
    link: BrokerLink | None = None


# one process per test, all started at once (start-up is most of the time), each its own service name
SCENARIOS = {
    "error": (SERVICE, "dying_error"), "kill": (SERVICE, "dying_kill"), "unreachable": (SERVICE, "dying_cut"),
    "gateway": (GATEWAY, "dying_gateway"), "hang": (SERVICE, "dying_hang"), "stop": (SERVICE, "dying_stop"),
}


@pytest.fixture(scope="module")
def scenarios(amqp_uri: str, tenant_files: tuple[Path, Path],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scenario]]:
    tenants_dir, secrets_dir = tenant_files
    link = BrokerLink(amqp_uri)
    started: dict[str, Scenario] = {}
    try:
        for key, (component, service) in SCENARIOS.items():
            work = tmp_path_factory.mktemp(f"dying-{key}")
            uri = link.amqp_uri if key == "unreachable" else amqp_uri
            variables = service_env(uri, tenants_dir, secrets_dir, work / "data", DYING_SERVICE_NAME=service,
                                    SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{free_port()}")
            started[key] = Scenario(ServiceProcess(component, variables, work).start(), service,
                                    link if key == "unreachable" else None)

        def all_started() -> bool:
            for key, scenario in started.items():
                assert scenario.process.alive, f"{key} exited while starting: {scenario.process.log()[-3000:]}"
            return all('"service_started"' in scenario.process.log() for scenario in started.values())

        wait_for(all_started, timeout=90, interval=0.2, what="every dying component started")
        yield started
    finally:
        for scenario in started.values():
            if scenario.process.alive:
                assert scenario.process.proc is not None
                scenario.process.proc.kill()
                scenario.process.proc.wait(timeout=10)
        link.close()


def die(amqp_uri: str, service: str, how: str, after: float) -> float:
    """Ask the component to kill its container `after` seconds from now; the monotonic time of the death."""
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        assert getattr(cluster, service).die(how, after) == "dying"
    return time.monotonic() + after


def exit_after(process: ServiceProcess, death: float, timeout: float) -> tuple[int | None, float]:
    """The process's exit status and how long after the death it came (None: still running)."""
    assert process.proc is not None
    try:
        status = process.proc.wait(timeout=max(0.0, death + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - death
    seconds = time.monotonic() - death
    print(f"{process.component}: exit status {status}, {seconds:.2f} s after the death")  # shown by -rP
    return status, seconds


@pytest.mark.parametrize("how", ["error", "kill"])
def test_a_dying_container_ends_its_process_with_a_non_zero_status(how: str, amqp_uri: str,
                                                                   scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios[how]
    death = die(amqp_uri, scenario.service, how, after=0.2)
    status, seconds = exit_after(scenario.process, death, timeout=GRACE_SECONDS + 5)
    log = scenario.process.log()
    assert status == EX_SOFTWARE, f"exit status {status} after {seconds:.1f} s: {log[-3000:]}"
    assert seconds < EXIT_WITHIN_SECONDS, f"{seconds:.1f} s"
    assert '"service_container_died"' in log and '"service_exiting_container_died"' in log
    assert '"service_container_kill_timed_out"' not in log  # the kill completed by itself
    if how == "error":
        assert '"error": "ContainerDeath"' in log  # the type, never the message


def test_a_container_dying_while_the_broker_is_unreachable_ends_its_process(
        amqp_uri: str, scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios["unreachable"]
    assert scenario.link is not None
    death = die(amqp_uri, scenario.service, "error", after=1.0)  # answered over the link, then:
    scenario.link.cut()  # the consumers are reconnecting, forever, when the container dies
    status, seconds = exit_after(scenario.process, death, timeout=GRACE_SECONDS + 5)
    log = scenario.process.log()
    assert status == EX_SOFTWARE, f"exit status {status} after {seconds:.1f} s: {log[-3000:]}"
    assert seconds < EXIT_WITHIN_SECONDS, f"{seconds:.1f} s"
    assert '"broker_consumer_kill_timed_out"' in log  # the consume loop did not stop by itself...
    assert '"service_container_kill_timed_out"' not in log  # ...and the kill still completed


def test_the_gateway_container_dying_ends_its_process(amqp_uri: str, scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios["gateway"]
    death = die(amqp_uri, scenario.service, "error", after=0.2)
    status, seconds = exit_after(scenario.process, death, timeout=GRACE_SECONDS + 5)
    log = scenario.process.log()
    assert status == EX_SOFTWARE, f"exit status {status} after {seconds:.1f} s: {log[-3000:]}"
    assert seconds < EXIT_WITHIN_SECONDS, f"{seconds:.1f} s"
    assert '"service_container_kill_timed_out"' not in log  # the read-model feed's kill returned


def test_a_kill_that_never_ends_is_cut_short_after_the_grace_period(
        amqp_uri: str, scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios["hang"]
    death = die(amqp_uri, scenario.service, "hang", after=0.2)  # an extension's kill blocks the event loop
    status, seconds = exit_after(scenario.process, death, timeout=GRACE_SECONDS + 5)
    log = scenario.process.log()
    assert status == EX_SOFTWARE, f"exit status {status} after {seconds:.1f} s: {log[-3000:]}"
    assert GRACE_SECONDS - 0.5 < seconds < EXIT_WITHIN_SECONDS, f"{seconds:.1f} s"
    assert '"service_container_kill_timed_out"' in log


def test_a_requested_stop_still_exits_with_status_0(scenarios: dict[str, Scenario]) -> None:
    process = scenarios["stop"].process
    assert process.terminate()
    status, seconds = exit_after(process, time.monotonic(), timeout=15)
    log = process.log()
    assert status == 0, f"exit status {status} after {seconds:.1f} s: {log[-3000:]}"
    assert '"service_stopped"' in log and '"service_container_died"' not in log
