"""Campaign progress as a metric: items by tenant and state, read at scrape time from the database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.appio.models import campaign_counts, messages
from sportello.db import Database
from sportello.metrics import ServiceStateCollector
from sportello.migrate import upgrade


def test_campaign_items_by_tenant_and_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'appio.sqlite3'}"
    upgrade("appio", url)
    database = Database(url)
    now = datetime.now(UTC)
    states = [("cremona", "c1", "sent")] * 3 + [("cremona", "c1", "not_deliverable"), ("lodi", "c2", "sent"),
                                               ("cremona", None, "sent")]  # the last is not a campaign's
    with database.transaction() as session:
        for n, (tenant, campaign, state) in enumerate(states):
            session.execute(messages.insert().values(
                id=f"m{n}", tenant=tenant, dedup_key=f"k{n}", io_service="tributi", kind="free_text",
                recipient_fiscal_code="RSSMRA85T10A562S", campaign_id=campaign, variables={}, state=state,
                attempts=0, next_attempt_at=now, correlation_id=f"corr-{n:08d}", created_at=now))
    registry = CollectorRegistry()
    registry.register(ServiceStateCollector("appio", database, campaign_counts))
    value = registry.get_sample_value
    assert value("sportello_campaign_items", {"service": "appio", "tenant": "cremona", "state": "sent"}) == 3
    assert value("sportello_campaign_items",
                 {"service": "appio", "tenant": "cremona", "state": "not_deliverable"}) == 1
    assert value("sportello_campaign_items", {"service": "appio", "tenant": "lodi", "state": "sent"}) == 1
    assert value("sportello_database_up", {"service": "appio"}) == 1
    database.dispose()


def test_services_without_campaigns_publish_no_campaign_metric(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    upgrade("ledger", url)
    registry = CollectorRegistry()
    registry.register(ServiceStateCollector("ledger", Database(url)))
    names = {metric.name for metric in registry.collect()}
    assert "sportello_campaign_items" not in names and "sportello_outbox_pending" in names


def test_pagopa_campaign_rows_by_tenant_and_state(tmp_path: Path) -> None:
    from services.pagopa.models import campaign_counts as pagopa_counts
    from services.pagopa.models import campaign_rows

    url = f"sqlite:///{tmp_path / 'pagopa.sqlite3'}"
    upgrade("pagopa", url)
    database = Database(url)
    with database.transaction() as session:
        for n, status in enumerate(["created", "created", "pending", "invalid"]):
            session.execute(campaign_rows.insert().values(campaign_id="c1", row_number=n + 1, tenant="cremona",
                                                          status=status))
    registry = CollectorRegistry()
    registry.register(ServiceStateCollector("pagopa", database, pagopa_counts))
    labels = {"service": "pagopa", "tenant": "cremona"}
    assert registry.get_sample_value("sportello_campaign_items", {**labels, "state": "created"}) == 2
    assert registry.get_sample_value("sportello_campaign_items", {**labels, "state": "pending"}) == 1
    assert registry.get_sample_value("sportello_campaign_items", {**labels, "state": "invalid"}) == 1
    database.dispose()
