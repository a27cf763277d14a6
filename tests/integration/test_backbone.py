"""The event backbone against real RabbitMQ and PostgreSQL, with real service processes.

An event written with a state change must take effect exactly once when the consumer is killed
mid-handling, when a message arrives twice, when RabbitMQ restarts between write and relay, and
when the producer dies between commit and publish; malformed events and always-failing handlers
must end in the dead-letter queue with their reason and be replayable. Counts are exact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kombu import Connection, Exchange
from nameko.standalone.rpc import ClusterRpcProxy

from sportello import bus
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tables import inbox, outbox
from tests.support.backbone import TEST_METADATA, EntryRecorded, controls, effects, progress, record_entry, stock_calls
from tests.support.processes import ServiceProcess, service_env, wait_for
from tests.support.servers import Databases, queue_depth, rabbitmqctl

pytestmark = pytest.mark.integration
TALLY_QUEUE = "tally.on_entry_recorded"


@dataclass
class Backbone:
    amqp_uri: str
    ledger: ServiceProcess
    tally: ServiceProcess
    ledger_db: Database
    tally_db: Database

    def rpc(self, service: str, method: str, *args: Any, correlation_id: str | None = None, **kwargs: Any) -> Any:
        context = {"correlation_id": correlation_id} if correlation_id else None
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=15, context_data=context) as cluster:
            return getattr(getattr(cluster, service), method)(*args, **kwargs)

    def wait_healthy(self, service: str, timeout: float = 30) -> None:
        def healthy() -> bool:
            try:
                return bool(self.rpc(service, "health")["status"] == "ok")
            except Exception:
                return False

        wait_for(healthy, timeout=timeout, interval=0.3, what=f"{service} healthy over RPC")

    def effects_for(self, event_id: str) -> int:
        with self.tally_db.transaction() as session:
            return int(session.execute(
                sa.select(sa.func.count()).select_from(effects).where(effects.c.event_id == event_id)).scalar_one())

    def effects_count(self, event_ids: list[str]) -> int:
        with self.tally_db.transaction() as session:
            return int(session.execute(
                sa.select(sa.func.count()).select_from(effects).where(effects.c.event_id.in_(event_ids))
            ).scalar_one())

    def set_control(self, **values: str) -> None:
        with self.tally_db.transaction() as session:
            session.execute(sa.delete(controls))
            for name, value in values.items():
                session.execute(sa.insert(controls).values(name=name, value=value))

    def stage_reached(self, event_id: str, stage: str) -> bool:
        with self.tally_db.transaction() as session:
            return session.execute(sa.select(progress.c.id).where(
                progress.c.event_id == event_id, progress.c.stage == stage)).first() is not None

    def outbox_body(self, event_id: str) -> str:
        with self.ledger_db.transaction() as session:
            return str(session.execute(sa.select(outbox.c.body).where(outbox.c.event_id == event_id)).scalar_one())

    def outbox_pending(self) -> int:
        with self.ledger_db.transaction() as session:
            return int(session.execute(sa.select(sa.func.count()).select_from(outbox)
                                       .where(outbox.c.published_at.is_(None))).scalar_one())

    def dead_letters(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.rpc("tally", "list_dead_letters", **filters))


@pytest.fixture(scope="module")
def backbone(amqp_uri: str, databases: Databases, tenant_files: tuple[Path, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    tenants_dir, secrets_dir = tenant_files
    work = tmp_path_factory.mktemp("backbone")
    processes: dict[str, ServiceProcess] = {}
    dbs: dict[str, Database] = {}
    for service in ("ledger", "tally"):
        url = databases.url(service)
        upgrade(service, url)
        dbs[service] = Database(url)
        TEST_METADATA.create_all(dbs[service].engine)
        env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data", SPORTELLO_DATABASE_URL=url,
                          SPORTELLO_EVENT_RETRY_DELAYS_MS="[300, 600]", SPORTELLO_OUTBOX_POLL_SECONDS="0.1")
        processes[service] = ServiceProcess(f"tests.support.backbone:{service.title()}Service", env, work).start()
    bb = Backbone(amqp_uri, processes["ledger"], processes["tally"], dbs["ledger"], dbs["tally"])
    try:
        bb.wait_healthy("ledger")
        bb.wait_healthy("tally")
        yield bb
    finally:
        for process in processes.values():
            process.stop()
        for db in dbs.values():
            db.dispose()


def _restart(bb: Backbone, process: ServiceProcess, service: str) -> None:
    process.start()
    bb.wait_healthy(service)


def test_every_shared_entrypoint_answers_over_rpc(backbone: Backbone) -> None:
    for service in ("ledger", "tally"):
        health = backbone.rpc(service, "health")
        assert health["service"] == service
        assert health["status"] == "ok"
        assert health["checks"]["database"] == {"status": "ok"}
        assert health["checks"]["tenants"] == 1
        assert backbone.rpc(service, "list_dead_letters", tenant="cremona") == []
        removed = backbone.rpc(service, "prune_history")  # nothing is old enough yet
        assert removed == {"outbox": 0, "inbox": 0, "dead_letters": 0}


def test_state_change_and_event_take_effect_once_with_correlation_id(backbone: Backbone) -> None:
    correlation = "it-backbone-corr-0001"
    replies = [backbone.rpc("ledger", "record", "cremona", 100 + i, correlation_id=correlation) for i in range(25)]
    event_ids = [reply["event_id"] for reply in replies]
    wait_for(lambda: backbone.effects_count(event_ids) == 25, timeout=30, what="25 effects")
    time.sleep(0.5)
    assert backbone.effects_count(event_ids) == 25
    assert backbone.outbox_pending() == 0
    with backbone.tally_db.transaction() as session:
        rows = session.execute(sa.select(effects.c.correlation_id, effects.c.amount_cents)
                               .where(effects.c.event_id.in_(event_ids))).all()
        claimed = session.execute(sa.select(sa.func.count()).select_from(inbox)
                                  .where(inbox.c.event_id.in_(event_ids))).scalar_one()
    assert {row.correlation_id for row in rows} == {correlation}  # HTTP/RPC id carried into the handler
    assert sorted(row.amount_cents for row in rows) == [100 + i for i in range(25)]
    assert claimed == 25


@pytest.mark.parametrize("stage", ["in_transaction", "committed"])
def test_consumer_killed_mid_handling_applies_the_event_once(backbone: Backbone, stage: str) -> None:
    knob = "pause_in_transaction" if stage == "in_transaction" else "pause_after_commit"
    backbone.set_control(**{knob: "120"})
    event_id = backbone.rpc("ledger", "record", "cremona", 4200)["event_id"]
    wait_for(lambda: backbone.stage_reached(event_id, stage), timeout=20, what=f"tally to reach {stage}")
    backbone.tally.kill9()
    # the unacked message is back in the queue, untouched by the dead consumer
    wait_for(lambda: queue_depth(backbone.amqp_uri, TALLY_QUEUE) == 1, timeout=10, what="message requeued")
    assert backbone.effects_for(event_id) == (0 if stage == "in_transaction" else 1)
    backbone.set_control()
    _restart(backbone, backbone.tally, "tally")
    wait_for(lambda: queue_depth(backbone.amqp_uri, TALLY_QUEUE) == 0 and backbone.effects_for(event_id) == 1,
             timeout=20, what="redelivered message handled")
    time.sleep(0.5)
    assert backbone.effects_for(event_id) == 1
    assert backbone.dead_letters() == []


def test_the_same_message_delivered_twice_takes_effect_once(backbone: Backbone) -> None:
    event_id = backbone.rpc("ledger", "record", "cremona", 777)["event_id"]
    wait_for(lambda: backbone.effects_for(event_id) == 1, timeout=15, what="first delivery")
    body = backbone.outbox_body(event_id)
    publisher = bus.ConfirmingPublisher(backbone.amqp_uri)
    try:
        for _ in range(2):
            publisher.publish_event(body, event_type=EntryRecorded.event_type, event_id=event_id,
                                    correlation_id="dup-test-0001", tenant="cremona")
    finally:
        publisher.close()
    wait_for(lambda: queue_depth(backbone.amqp_uri, TALLY_QUEUE) == 0, timeout=10, what="duplicates consumed")
    time.sleep(1.0)
    assert backbone.effects_for(event_id) == 1
    assert backbone.dead_letters() == []


def test_rabbitmq_restarted_between_write_and_relay(backbone: Backbone) -> None:
    rabbitmqctl("stop_app")
    try:
        with backbone.ledger_db.transaction() as session:
            event_ids = [record_entry(session, tenant="cremona", amount_cents=10 + i).id for i in range(10)]
        time.sleep(1.0)  # the relay tries, and fails, while the broker is down
        assert backbone.outbox_pending() == 10
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
    wait_for(lambda: backbone.effects_count(event_ids) == 10, timeout=60, interval=0.5,
             what="10 effects after the broker came back")
    time.sleep(0.5)
    assert backbone.effects_count(event_ids) == 10
    assert backbone.outbox_pending() == 0
    backbone.wait_healthy("ledger")
    backbone.wait_healthy("tally")


def test_producer_dying_between_commit_and_publish_loses_nothing(backbone: Backbone) -> None:
    backbone.ledger.kill9()
    with backbone.ledger_db.transaction() as session:  # committed, never published by the dead process
        event_ids = [record_entry(session, tenant="cremona", amount_cents=500 + i).id for i in range(5)]
    assert backbone.outbox_pending() == 5
    _restart(backbone, backbone.ledger, "ledger")
    wait_for(lambda: backbone.effects_count(event_ids) == 5, timeout=30, what="5 effects after producer restart")
    assert backbone.outbox_pending() == 0


def _publish_raw(amqp_uri: str, body: bytes, *, routing_key: str, content_type: str,
                 exchange: Exchange = bus.EVENTS_EXCHANGE) -> None:
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        producer.publish(body, exchange=exchange, routing_key=routing_key, content_type=content_type,
                         content_encoding="utf-8", delivery_mode=2, serializer=None, declare=[exchange])


def test_malformed_events_are_dead_lettered_with_their_reason(backbone: Backbone) -> None:
    good = json.loads(backbone.outbox_body(backbone.rpc("ledger", "record", "cremona", 1)["event_id"]))
    no_tenant = {k: v for k, v in good.items() if k != "tenant"} | {"id": "malformed-no-tenant"}
    future = good | {"id": "malformed-unknown-version", "type": "it.sportello.test.entry.recorded.v9"}
    bad_payload = good | {"id": "malformed-bad-payload", "data": {"entry_id": "x", "amount_cents": "lots"}}
    rk = EntryRecorded.event_type
    before = backbone.dead_letters(pending_only=False, limit=1000)
    _publish_raw(backbone.amqp_uri, b"{not json", routing_key=rk, content_type="application/json")
    _publish_raw(backbone.amqp_uri, b"plain words", routing_key=rk, content_type="text/plain")
    for body in (no_tenant, future, bad_payload):
        _publish_raw(backbone.amqp_uri, json.dumps(body).encode(), routing_key=rk, content_type="application/json")
    wait_for(lambda: len(backbone.dead_letters(pending_only=False, limit=1000)) == len(before) + 5, timeout=20,
             what="5 dead letters recorded")
    letters = backbone.dead_letters(pending_only=False, limit=1000)[len(before):]
    reasons = sorted(letter["reason"].split(":")[0] for letter in letters)
    assert reasons == ["event.malformed", "event.malformed", "event.unknown_type", "undecodable body",
                       "undecodable body"]
    assert {letter["queue"] for letter in letters} == {TALLY_QUEUE}
    assert all(letter["attempts"] == 0 for letter in letters)
    assert {letter["event_id"] for letter in letters if letter["event_id"]} == {
        "malformed-no-tenant", "malformed-unknown-version", "malformed-bad-payload"}
    assert backbone.rpc("tally", "health")["status"] == "ok"  # the consumer did not crash on input
    assert backbone.rpc("tally", "health")["checks"]["dead_letters"]["pending"] >= 5
    assert queue_depth(backbone.amqp_uri, TALLY_QUEUE) == 0
    assert queue_depth(backbone.amqp_uri, "tally.dead-letters") == 0  # stored, then acked


def test_failing_handler_is_retried_then_dead_lettered_and_replay_delivers_once(backbone: Backbone) -> None:
    backbone.set_control(fail="always")
    event_id = backbone.rpc("ledger", "record", "cremona", 9900)["event_id"]

    def letter() -> dict[str, Any] | None:
        return next((item for item in backbone.dead_letters() if item["event_id"] == event_id), None)

    dead = wait_for(letter, timeout=20, what="the failing event's dead letter")
    assert dead["attempts"] == 3  # first delivery + 2 retries (300 ms, 600 ms)
    assert dead["reason"].startswith("RuntimeError: tally was told to fail")
    assert dead["tenant"] == "cremona"
    assert backbone.effects_for(event_id) == 0  # each failed attempt rolled back with its inbox claim
    for delay in (300, 600):
        assert queue_depth(backbone.amqp_uri, f"{TALLY_QUEUE}.retry.{delay}ms") == 0

    backbone.set_control()  # "fixed"
    replayed = backbone.rpc("tally", "replay_dead_letter", dead["id"], tenant="cremona")
    assert replayed["replay_count"] == 1 and replayed["replayed_at"]
    wait_for(lambda: backbone.effects_for(event_id) == 1, timeout=15, what="replayed event applied")
    backbone.rpc("tally", "replay_dead_letter", dead["id"])  # an operator double-clicks
    wait_for(lambda: queue_depth(backbone.amqp_uri, TALLY_QUEUE) == 0, timeout=10, what="second replay consumed")
    time.sleep(0.5)
    assert backbone.effects_for(event_id) == 1
    assert letter() is None  # no longer pending
    with pytest.raises(Exception, match="no dead letter"):
        backbone.rpc("tally", "replay_dead_letter", dead["id"], tenant="another-comune")


def test_stock_nameko_event_handler_acks_a_failed_message_and_loses_it(
        backbone: Backbone, databases: Databases, tenant_files: tuple[Path, Path],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The nameko 2.14 behaviour our ReliableEventHandler exists for (DESIGN.md, 'Known behaviours')."""
    url = databases.url("stock")
    db = Database(url)
    TEST_METADATA.create_all(db.engine)
    work = tmp_path_factory.mktemp("stock")
    env = service_env(backbone.amqp_uri, *tenant_files, work / "data", SPORTELLO_DATABASE_URL=url)
    stock = ServiceProcess("tests.support.backbone:StockNamekoService", env, work).start()
    queue = "evt-ledger-stock.thing.happened--stock.on_thing"
    try:
        wait_for(lambda: _queue_exists(backbone.amqp_uri, queue), timeout=30, what="stock consumer queue")
        _publish_raw(backbone.amqp_uri, b'{"thing": 1}', routing_key="stock.thing.happened",
                     content_type="application/json", exchange=Exchange("ledger.events", type="topic", durable=True))

        def calls() -> int:
            with db.transaction() as session:
                return int(session.execute(sa.select(sa.func.count()).select_from(stock_calls)).scalar_one())

        wait_for(lambda: calls() == 1, timeout=15, what="the stock handler to run")
        time.sleep(1.0)
        assert calls() == 1  # it failed once and was never retried...
        assert queue_depth(backbone.amqp_uri, queue) == 0  # ...because the failed message was acked: gone
    finally:
        stock.stop()
        db.dispose()


def _queue_exists(amqp_uri: str, queue: str) -> bool:
    try:
        queue_depth(amqp_uri, queue)
        return True
    except Exception:
        return False
