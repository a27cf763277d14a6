"""A private RabbitMQ node and a private PostgreSQL cluster, owned (and restarted) by one scenario.

Why private: the resilience scenarios restart the broker and the database mid-campaign, and the
system RabbitMQ (5672) and PostgreSQL (5432) are shared by every other test run on the machine.
So each scenario starts its own node / cluster in a temporary directory on free ports and only
ever stops those. Both are the system's own binaries (RabbitMQ 3.10, PostgreSQL 15), no plugins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from kombu import Connection

from tests.support.processes import free_port, wait_for

RABBITMQ_BIN = Path(os.environ.get("SPORTELLO_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
POSTGRES_BIN = Path(os.environ.get("SPORTELLO_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


class PrivateRabbitMQ:
    """`rabbitmq-server` with its own node name, ports, Mnesia and logs (and its own Erlang cookie)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.node = f"sportello-res-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        (folder / "rabbitmq.conf").write_text("loopback_users = none\n")
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq-env.conf").write_text("")  # not the system's (it names the system node)
        self.env = {**os.environ, "HOME": str(folder), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(self.dist_port),
                    "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
                    "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
                    "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
                    "ERL_EPMD_ADDRESS": "127.0.0.1",
                    "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _ping(self) -> bool:
        try:
            with Connection(self.amqp_uri, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
            return True
        except Exception:
            return False

    def start(self) -> PrivateRabbitMQ:
        log = (self.folder / "server.out").open("ab")
        self.proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._ping, timeout=90, interval=0.5, what=f"private RabbitMQ {self.node}")
        return self

    def ctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()[:500]}")
        return result.stdout

    def stop(self) -> None:
        """The whole node down (clean shutdown, as a systemd restart does); waits for its exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ctl("stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def restart(self, down_seconds: float = 2.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL 15 cluster made with `initdb` in a temporary directory, run by `pg_ctl` as postgres."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.restarts = 0
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "postgres", "postgres")
        self._as_postgres(POSTGRES_BIN / "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                          "-E", "UTF8", "--no-locale")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = "
                       f"'{folder}'\nmax_connections = 200\nshared_buffers = 64MB\n")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, program: Path, *args: str, timeout: float = 120) -> str:
        command = [str(program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                cwd=self.folder)
        if result.returncode != 0:
            raise RuntimeError(f"{program.name} failed: {(result.stderr or result.stdout).strip()[:800]}")
        return result.stdout

    def _ping(self) -> bool:
        engine = sa.create_engine(self.admin_url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False
        finally:
            engine.dispose()

    def start(self) -> PrivatePostgres:
        self._as_postgres(POSTGRES_BIN / "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                          "-w", "-t", "60", "start")
        wait_for(self._ping, timeout=60, interval=0.3, what="private PostgreSQL")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(POSTGRES_BIN / "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_seconds: float = 2.0) -> None:
        """Stop (fast: open connections are cut, as in a crash or failover) and start again."""
        self.stop("fast")
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
