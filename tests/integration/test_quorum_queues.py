"""With SPORTELLO_QUORUM_QUEUES=true every durable queue is a quorum queue, and the backbone holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sportello.db import Database
from sportello.migrate import upgrade
from tests.support.backbone import TEST_METADATA, controls, effects
from tests.support.processes import ServiceProcess, service_env, wait_for
from tests.support.servers import Databases, isolated_vhost, rabbitmqctl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quorum_platform(databases: Databases, tenant_files: tuple[Path, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Database]]:
    from tests.support.servers import require_rabbitmq

    require_rabbitmq()
    work = tmp_path_factory.mktemp("quorum")
    with isolated_vhost() as amqp_uri:
        vhost = amqp_uri.rsplit("/", 1)[1]
        processes, dbs = [], []
        for service in ("ledger", "tally"):
            url = databases.url(f"q{service}")
            upgrade(service, url)
            db = Database(url)
            TEST_METADATA.create_all(db.engine)
            dbs.append(db)
            env = service_env(amqp_uri, *tenant_files, work / "data", SPORTELLO_DATABASE_URL=url,
                              SPORTELLO_QUORUM_QUEUES="true", SPORTELLO_EVENT_RETRY_DELAYS_MS="[300]")
            processes.append(ServiceProcess(f"tests.support.backbone:{service.title()}Service", env, work).start())
        try:
            from nameko.standalone.rpc import ClusterRpcProxy

            def ready() -> bool:
                try:
                    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=5) as cluster:
                        return cluster.tally.health()["status"] == "ok" == cluster.ledger.health()["status"]
                except Exception:
                    return False

            wait_for(ready, timeout=40, interval=0.5, what="quorum services healthy")
            yield amqp_uri, vhost, dbs[1]
        finally:
            for process in processes:
                process.stop()
            for db in dbs:
                db.dispose()


def test_durable_queues_are_quorum_and_events_still_take_effect_once(
        quorum_platform: tuple[str, str, Database]) -> None:
    from nameko.standalone.rpc import ClusterRpcProxy

    amqp_uri, vhost, tally_db = quorum_platform
    listing = rabbitmqctl("list_queues", "-p", vhost, "name", "type", "--no-table-headers", "--quiet")
    types = dict(line.split("\t")[:2] for line in listing.strip().splitlines() if "\t" in line)
    ours = {name: kind for name, kind in types.items() if name.startswith(("tally.", "ledger."))}
    assert ours == {
        "tally.on_entry_recorded": "quorum",
        "tally.on_entry_recorded.retry.300ms": "quorum",
        "tally.dead-letters": "quorum",
        "ledger.dead-letters": "quorum",
    }

    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        ok_event = cluster.ledger.record("cremona", 11)["event_id"]

        def count(event_id: str) -> int:
            with tally_db.transaction() as session:
                return int(session.execute(sa.select(sa.func.count()).select_from(effects)
                                           .where(effects.c.event_id == event_id)).scalar_one())

        wait_for(lambda: count(ok_event) == 1, timeout=20, what="effect through quorum queues")

        # a failing handler goes through the quorum retry queue and ends as a stored dead letter
        with tally_db.transaction() as session:
            session.execute(sa.insert(controls).values(name="fail", value="always"))
        failing = cluster.ledger.record("cremona", 12)["event_id"]
        letter = wait_for(lambda: next((d for d in cluster.tally.list_dead_letters() if d["event_id"] == failing),
                                       None), timeout=20, what="dead letter via quorum retry queue")
        assert letter["attempts"] == 2
        with tally_db.transaction() as session:
            session.execute(sa.delete(controls))
        cluster.tally.replay_dead_letter(letter["id"])
        wait_for(lambda: count(failing) == 1, timeout=20, what="replayed through quorum queue")
