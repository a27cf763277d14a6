"""Benchmark: events/s from outbox write to idempotent consumer effect, next to the raw broker.

    python -m bench.event_pipeline [--events 3000]

Both figures are measured in the same run, on the same RabbitMQ (a throw-away vhost) and
PostgreSQL (throw-away databases):
- raw broker: kombu publishes persistent messages with a confirm per message while a consumer
  acks them — the broker's own ceiling for at-least-once delivery;
- Sportello: one transaction per event writes a row and its outbox event (as a service does); the
  producer service's relay publishes with confirms; the consumer service claims each event in its
  inbox and applies the effect in one PostgreSQL transaction. Timed from the first write to the
  last effect.
The target (DESIGN.md) is a ratio of at least 0.50. Not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from kombu import Connection, Consumer, Exchange, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from sandbox.secrets import generate
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tables import outbox
from tests.support.backbone import TEST_METADATA, effects, record_entry
from tests.support.processes import ROOT, ServiceProcess, service_env, wait_for
from tests.support.servers import Databases, isolated_vhost, require_postgresql, require_rabbitmq

TARGET_RATIO = 0.50
WRITERS = 8


def raw_broker_rate(amqp_uri: str, count: int, body: bytes) -> float:
    """Messages/s through the broker: publish with a confirm each, consumed and acked concurrently."""
    queue = Queue("bench.raw", exchange=Exchange("bench.raw", type="direct", durable=True), routing_key="raw",
                  durable=True)
    consumed = threading.Event()
    received = 0

    def consume() -> None:
        nonlocal received
        with Connection(amqp_uri) as connection:
            def on_message(_body: object, message: object) -> None:
                nonlocal received
                message.ack()  # type: ignore[attr-defined]
                received += 1
                if received == count:
                    consumed.set()

            with Consumer(connection, queues=[queue], callbacks=[on_message], accept=["json"], prefetch_count=200):
                while not consumed.is_set():
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        continue

    with Connection(amqp_uri) as connection:
        queue(connection.default_channel).declare()
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    time.sleep(0.5)
    started = time.perf_counter()
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for _ in range(count):
            producer.publish(body, exchange=queue.exchange, routing_key="raw", delivery_mode=2,
                             content_type="application/json", content_encoding="utf-8", serializer=None)
    consumed.wait(timeout=300)
    return count / (time.perf_counter() - started)


def sportello_rate(amqp_uri: str, databases: Databases, count: int, work: Path, stages: dict[str, float],
                   consumers: int = 1, batch: int = 1) -> float:
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    dbs: dict[str, Database] = {}
    processes = []
    for service in ("ledger", "tally"):
        url = databases.url(service)
        upgrade(service, url)
        dbs[service] = Database(url)
        TEST_METADATA.create_all(dbs[service].engine)
        env = service_env(amqp_uri, ROOT / "sandbox" / "tenants", secrets_dir, work / "data",
                          SPORTELLO_DATABASE_URL=url, SPORTELLO_LOG_LEVEL="WARNING", TALLY_CONTROLS="off",
                          TALLY_BATCH=str(batch))
        component = "BatchTallyService" if service == "tally" and batch > 1 else f"{service.title()}Service"
        for replica in range(consumers if service == "tally" else 1):
            (work / f"{service}-{replica}").mkdir()
            processes.append(ServiceProcess(f"tests.support.backbone:{component}", env,
                                            work / f"{service}-{replica}").start())
    try:
        def effect_count() -> int:
            with dbs["tally"].transaction() as session:
                return int(session.execute(sa.select(sa.func.count()).select_from(effects)).scalar_one())

        def healthy() -> bool:
            try:
                with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=5) as cluster:
                    return cluster.ledger.health()["status"] == "ok" == cluster.tally.health()["status"]
            except Exception:  # noqa: BLE001 - not up yet
                return False

        # consumer queues exist once the services are up: events published before would go nowhere
        wait_for(healthy, timeout=60, interval=0.3, what="ledger and tally healthy")
        # warm up: one event through, so both services are consuming before the clock starts
        with dbs["ledger"].transaction() as session:
            record_entry(session, tenant="cremona", amount_cents=1)
        wait_for(lambda: effect_count() == 1, timeout=60, interval=0.2, what="warm-up event")
        def unpublished() -> int:
            with dbs["ledger"].transaction() as session:
                return int(session.execute(sa.select(sa.func.count()).select_from(outbox)
                                           .where(outbox.c.published_at.is_(None))).scalar_one())

        def write(share: range) -> None:
            for i in share:
                with dbs["ledger"].transaction() as session:
                    record_entry(session, tenant="cremona", amount_cents=100 + i)

        # concurrent writers, as a service answering concurrent requests
        writers = [threading.Thread(target=write, args=(range(w, count, WRITERS),)) for w in range(WRITERS)]
        started = time.perf_counter()
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        stages["written"] = time.perf_counter() - started
        wait_for(lambda: unpublished() == 0, timeout=600, interval=0.05, what="outbox drained")
        stages["published"] = time.perf_counter() - started
        wait_for(lambda: effect_count() == count + 1, timeout=600, interval=0.05, what=f"{count} effects")
        stages["applied"] = time.perf_counter() - started
        return count / stages["applied"]
    finally:
        for process in processes:
            process.stop()
        for db in dbs.values():
            db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--consumers", type=int, default=1, help="replicas of the consuming service")
    parser.add_argument("--batch", type=int, default=100,
                        help="events per transaction of the batching consumer (compared with one per event)")
    args = parser.parse_args()
    require_rabbitmq()
    require_postgresql()
    body = json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/sportello/bench",
                       "type": "it.sportello.test.entry.recorded.v1", "time": "2026-11-21T00:00:00Z",
                       "tenant": "cremona", "correlationid": str(uuid.uuid4()), "subject": "x" * 32,
                       "data": {"entry_id": "x" * 32, "amount_cents": 100}}).encode()
    runs: dict[str, tuple[float, dict[str, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="sportello-bench-"))
    with isolated_vhost() as amqp_uri:
        raw = raw_broker_rate(amqp_uri, args.events, body)
        for label, batch in (("one event per transaction", 1), (f"batches of up to {args.batch}", args.batch)):
            databases = Databases()  # fresh databases and queues per consumer kind
            stages: dict[str, float] = {}
            try:
                rate = sportello_rate(amqp_uri, databases, args.events, work / f"batch-{batch}", stages,
                                      args.consumers, batch)
            finally:
                databases.drop_all()
            runs[label] = (rate, stages)
    print(f"event pipeline, {args.events} events, {len(body)}-byte envelopes, {args.consumers} consumer replica(s)")
    print(f"  raw broker (kombu, confirm per message, consumed with acks)  {raw:8.0f} msg/s")
    for label, (rate, stages) in runs.items():
        ratio = rate / raw
        print(f"  sportello, consumer {label:<27} {rate:8.0f} events/s  ratio {ratio:.2f} "
              f"(target >= {TARGET_RATIO:.2f}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
        print("    stages (s from the first write): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
