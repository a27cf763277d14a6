"""Batching event handlers (`@event_handler(type, batch=N)`) against real RabbitMQ and PostgreSQL.

Many events applied in one transaction must still take effect exactly once each: duplicates
inside and across batches count once, and a poison event in a batch is split out, retried and
dead-lettered alone while its neighbours are applied.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nameko.standalone.rpc import ClusterRpcProxy

from sportello import bus
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tables import inbox, outbox
from tests.support.backbone import TEST_METADATA, EntryRecorded, effects, record_entry
from tests.support.processes import ServiceProcess, service_env, wait_for
from tests.support.servers import Databases, isolated_vhost, queue_depth

pytestmark = pytest.mark.integration
BATCH_QUEUE = "tally.on_entries_recorded"


@dataclass
class Pipeline:
    amqp_uri: str
    ledger_db: Database
    tally_db: Database

    def rpc(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=15) as cluster:
            return getattr(getattr(cluster, service), method)(*args, **kwargs)

    def record(self, amounts: list[int]) -> list[str]:
        """Entries written as a service writes them: row and outbox event in one transaction each."""
        ids = []
        for amount in amounts:
            with self.ledger_db.transaction() as session:
                ids.append(record_entry(session, tenant="cremona", amount_cents=amount).id)
        return ids

    def effects_of(self, event_ids: list[str]) -> dict[str, int]:
        with self.tally_db.transaction() as session:
            rows = session.execute(sa.select(effects.c.event_id, sa.func.count()).where(
                effects.c.event_id.in_(event_ids)).group_by(effects.c.event_id)).all()
        return {row[0]: int(row[1]) for row in rows}


@pytest.fixture(scope="module")
def pipeline(tenant_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tenants_dir, secrets_dir = tenant_files
    work = tmp_path_factory.mktemp("batch")
    databases = Databases()
    processes: list[ServiceProcess] = []
    dbs: dict[str, Database] = {}
    try:
        with isolated_vhost() as amqp_uri:  # its own vhost: this `tally` must not answer the backbone's RPCs
            for service, component in (("ledger", "LedgerService"), ("tally", "BatchTallyService")):
                url = databases.url(service)
                upgrade(service, url)
                dbs[service] = Database(url)
                TEST_METADATA.create_all(dbs[service].engine)
                env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data", SPORTELLO_DATABASE_URL=url,
                                  SPORTELLO_EVENT_RETRY_DELAYS_MS="[300, 600]",
                                  SPORTELLO_OUTBOX_POLL_SECONDS="0.1", TALLY_BATCH="50")
                processes.append(ServiceProcess(f"tests.support.backbone:{component}", env, work).start())
            found = Pipeline(amqp_uri, dbs["ledger"], dbs["tally"])
            for service in ("ledger", "tally"):
                wait_for(lambda s=service: _healthy(found, s), timeout=30, interval=0.3, what=f"{service} healthy")
            yield found
            for process in processes:
                process.stop()
    finally:
        for process in processes:
            process.stop()
        for db in dbs.values():
            db.dispose()
        databases.drop_all()


def _healthy(pipeline: Pipeline, service: str) -> bool:
    try:
        return bool(pipeline.rpc(service, "health")["status"] == "ok")
    except Exception:
        return False


def test_many_events_take_effect_once_each_in_fewer_transactions(pipeline: Pipeline) -> None:
    event_ids = pipeline.record([100 + i for i in range(300)])
    wait_for(lambda: len(pipeline.effects_of(event_ids)) == 300, timeout=60, what="300 effects")
    assert set(pipeline.effects_of(event_ids).values()) == {1}
    with pipeline.tally_db.transaction() as session:
        claimed_at = session.execute(sa.select(inbox.c.processed_at).where(inbox.c.event_id.in_(event_ids))).scalars()
        transactions = len(set(claimed_at))  # a batch's claims share its one timestamp
    assert transactions < 300 / 2, f"{transactions} transactions for 300 events: not batched"


def test_copies_of_an_event_inside_and_across_batches_count_once(pipeline: Pipeline) -> None:
    [event_id] = pipeline.record([4242])
    wait_for(lambda: pipeline.effects_of([event_id]) == {event_id: 1}, timeout=20, what="first delivery")
    with pipeline.ledger_db.transaction() as session:
        body = session.execute(sa.select(outbox.c.body).where(outbox.c.event_id == event_id)).scalar_one()
    publisher = bus.ConfirmingPublisher(pipeline.amqp_uri)
    try:
        for _ in range(5):  # close together: several land in one batch, the rest in the next
            publisher.publish_event(body, event_type=EntryRecorded.event_type, event_id=event_id,
                                    correlation_id="batch-dup-0001", tenant="cremona")
    finally:
        publisher.close()
    wait_for(lambda: queue_depth(pipeline.amqp_uri, BATCH_QUEUE) == 0, timeout=10, what="copies consumed")
    time.sleep(0.5)
    assert pipeline.effects_of([event_id]) == {event_id: 1}


def test_a_poison_event_is_split_out_and_dead_lettered_alone(pipeline: Pipeline) -> None:
    amounts = [500 + i for i in range(20)]
    amounts[7] = -1  # BatchTallyService refuses negative entries
    event_ids = pipeline.record(amounts)
    poison = event_ids[7]

    def letter() -> dict[str, Any] | None:
        letters = pipeline.rpc("tally", "list_dead_letters", tenant="cremona")
        return next((item for item in letters if item["event_id"] == poison), None)

    dead = wait_for(letter, timeout=30, what="the poison event's dead letter")
    assert dead["attempts"] == 3  # its batch, then alone: first try + 2 retries
    assert dead["reason"].startswith("ValueError: tally refuses a negative entry")
    assert dead["queue"] == BATCH_QUEUE
    applied = pipeline.effects_of(event_ids)
    assert applied == {event_id: 1 for event_id in event_ids if event_id != poison}
    assert [item["event_id"] for item in pipeline.rpc("tally", "list_dead_letters")] == [poison]
