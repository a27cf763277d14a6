"""Process entry point: `python -m sportello.edge.run <component>` runs one service or the gateway.

Start-up fails fast: settings and tenants are validated, the service's database is migrated,
then the nameko container starts. SIGTERM / SIGINT stop it gracefully (in-flight workers
finish, unacked messages go back to the broker): exit status 0.

A container that dies on its own (nameko kills it when an extension's thread raises, e.g. a
consumer that lost its broker) ends the process with status 70 (EX_SOFTWARE), so Kubernetes or
any supervisor restarts it: a process left up with a dead container serves nothing, and its
/healthz still answers. nameko's kill can itself hang (an extension waiting for a broker that
is away), so once a container starts dying the process gets `CONTAINER_DEATH_GRACE_SECONDS` to
finish it and is then ended with `os._exit` from a real OS thread, whatever the event loop does.
"""

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # known; see docs/adr/0001

import eventlet  # noqa: E402

eventlet.monkey_patch()  # must precede every other import that touches sockets or threads

import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import psycogreen.eventlet  # noqa: E402
import structlog  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

from sportello.edge.kernel import SETTINGS_CONFIG_KEY  # noqa: E402
from sportello.errors import ConfigurationError  # noqa: E402
from sportello.logging import configure_logging  # noqa: E402
from sportello.metrics import metrics_address, serve  # noqa: E402
from sportello.settings import load_settings  # noqa: E402
from sportello.tenants import SecretSource, load_tenants  # noqa: E402
from sportello.tracing import configure_tracing  # noqa: E402
from sportello.version import __version__  # noqa: E402

psycogreen.eventlet.patch_psycopg()

COMPONENTS = {
    "anpr": "services.anpr.service:AnprService",
    "pagopa": "services.pagopa.service:PagoPAService",
    "spid": "services.spid.service:SpidService",
    "appio": "services.appio.service:AppIOService",
    "gateway": "gateway.service:GatewayService",
}


EX_SOFTWARE = 70  # the container died on its own: restart me
CONTAINER_DEATH_GRACE_SECONDS = 5.0  # from the start of a container's kill to the process's end, at most

# Not green: the watchdog must fire even if the event loop is stuck in a blocking call.
_os_threading = eventlet.patcher.original("threading")
_os_time = eventlet.patcher.original("time")


class ContainerDeathWatch:
    """Learns that the container is dying (its `kill()` started) and bounds how long the process may
    take to end after that."""

    def __init__(self, service: str, log: Any, grace: float = CONTAINER_DEATH_GRACE_SECONDS) -> None:
        self.service = service
        self.log = log
        self.grace = grace
        self.died = False
        self.stop_requested = False

    def container_dying(self, exc_info: Any) -> None:
        if self.died:
            return
        self.died = True
        error = type(exc_info[1]).__name__ if exc_info else None  # the type only: a message may carry data
        self.log.error("service_container_died", service=self.service, error=error, grace_seconds=self.grace)
        _os_threading.Thread(target=self._exit_after_grace, name="sportello-death-watch", daemon=True).start()

    def _exit_after_grace(self) -> None:
        _os_time.sleep(self.grace)
        # Still here: the kill, or what follows it, hangs. One static line straight to stdout (where
        # structlog writes), no lock to wait for, then out.
        line = {"event": "service_container_kill_timed_out", "service": self.service, "level": "error",
                "status": EX_SOFTWARE}
        os.write(1, (json.dumps(line) + "\n").encode())
        os._exit(EX_SOFTWARE)


def watched_container_class(watch: ContainerDeathWatch) -> type[ServiceContainer]:
    class WatchedContainer(ServiceContainer):
        """nameko's container, telling `watch` when it starts dying (before any extension's kill)."""

        def kill(self, exc_info: Any = None) -> None:
            # nameko 2.14's own flags: the first kill of a container that has not already stopped
            if not self._being_killed and not self._died.ready():
                watch.container_dying(exc_info)
            super().kill(exc_info)

    return WatchedContainer


def load_component(name: str) -> Any:
    target = COMPONENTS.get(name, name)
    if ":" not in target:
        raise ConfigurationError(f"unknown component {name!r}; one of {', '.join(COMPONENTS)} or module:Class")
    module_name, class_name = target.split(":", 1)
    return getattr(importlib.import_module(module_name), class_name)


def nameko_config(settings: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "AMQP_URI": settings.amqp_uri,
        SETTINGS_CONFIG_KEY: settings,
        "max_workers": 32,
        "parent_calls_tracked": 10,
        "serializer": "json",
    }
    config.update(extra or {})
    return config


def freeze_startup_heap(log: Any) -> None:
    """Move every object alive after start-up (modules, contracts, the OpenAPI document...) out of the
    garbage collector's sight.

    Why: measured on the gateway under load (64 connections), full collections re-scanned ~160,000
    start-up objects about once a second, 120-160 ms each, and those pauses were the p99 of every
    route (168 ms); frozen, a full collection takes ~10 ms and p99 fell to ~41 ms (ADR 0012). The
    services answer RPCs and events from the same kind of heap, so every component does it.
    """
    gc.collect()
    gc.freeze()
    log.info("startup_heap_frozen", objects=gc.get_freeze_count())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m sportello.edge.run <{'|'.join(COMPONENTS)}|module:Class>", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        service_cls = load_component(args[0])
        metrics_at = metrics_address()  # SPORTELLO_METRICS_ADDRESS: /metrics, /healthz, /readyz
        tracer_provider = configure_tracing(service_cls.name, __version__)  # SPORTELLO_TRACES_EXPORTER
        configure_logging(service_cls.name, settings.log_level, settings.log_format)
        load_tenants(settings.tenants_dir, SecretSource(secrets_dir=settings.secrets_dir))  # fail fast
        extra: dict[str, Any] = {}
        if getattr(service_cls, "serves_http", False):
            extra["WEB_SERVER_ADDRESS"] = settings.gateway_address
        else:
            from sportello.migrate import upgrade

            upgrade(service_cls.name, settings.database_url_for(service_cls.name))
    except ConfigurationError as exc:
        print(f"sportello: cannot start {args[0]}: {exc.detail}", file=sys.stderr)
        return 78  # EX_CONFIG
    log = structlog.get_logger("sportello.edge.run")
    watch = ContainerDeathWatch(service_cls.name, log)
    runner = ServiceRunner(nameko_config(settings, extra))
    runner.container_cls = watched_container_class(watch)
    runner.add_service(service_cls)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("service_stopping", signal=signum)
        watch.stop_requested = True
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    freeze_startup_heap(log)
    if metrics_at is not None:
        serve(*metrics_at, component=service_cls.name, version=__version__)
    log.info("service_started", component=args[0])
    try:
        runner.wait()  # returns after a stop or a kill without error; raises what killed the container
    except Exception as exc:  # noqa: BLE001 - the container died: ended below with a non-zero status
        watch.container_dying((type(exc), exc, None))
    status = EX_SOFTWARE if watch.died or not watch.stop_requested else 0
    if status:
        log.error("service_exiting_container_died", component=args[0], status=status)
    else:
        log.info("service_stopped", component=args[0])
    if tracer_provider is not None:
        tracer_provider.shutdown()  # sends what an OTLP batch still holds
    return status


if __name__ == "__main__":
    raise SystemExit(main())
