"""CSV campaigns: parsing and per-row validation, storage, batched creation, crash resume, report."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.pagopa.application import Positions
from services.pagopa.campaigns import Campaigns
from services.pagopa.domain.campaign_csv import parse_amount, parse_campaign, parse_date
from services.pagopa.domain.errors import GpdRejected, GpdUnavailable, IdempotencyConflict
from services.pagopa.domain.positions import PaymentPosition
from services.pagopa.models import campaign_rows, positions
from services.pagopa.models import campaigns as campaigns_table
from services.pagopa.ports import GpdPosition
from sportello.db import Database
from sportello.errors import NotFound, ValidationFailed
from sportello.events import parse_event
from sportello.tables import outbox
from sportello.tenants import Tenant
from tests.unit.pagopa.support import CITIZEN, IBAN, OTHER_CITIZEN, migrated, registry, tenant

TODAY = date(2026, 11, 21)
HEADER = "codice_fiscale;nominativo;importo;scadenza;causale;iban"


class Crash(Exception):
    """Stands for kill -9 between GPD's answer and our commit."""


@dataclass
class BulkGpd:
    """GPD's bulk semantics: all or nothing, 409 when one exists, 400 for a refused debtor."""

    refuse: set[str] = field(default_factory=set)  # debtor fiscal codes GPD refuses
    unavailable: int = 0  # next bulk calls that fail as the adapter does after its retries
    crash_after_bulk: int = 0  # next bulk calls that succeed and then "crash" the caller
    stored: dict[str, str] = field(default_factory=dict)  # iupd -> status
    created: Counter[str] = field(default_factory=Counter)  # iupd -> times created
    bulk_calls: int = 0

    def _create(self, position: PaymentPosition) -> None:
        self.stored[position.iupd] = "VALID"
        self.created[position.iupd] += 1

    def create(self, tenant: Tenant, position: PaymentPosition, *, publish: bool) -> GpdPosition:
        if position.request.debtor.fiscal_code in self.refuse:
            raise GpdRejected("GPD refused to create the position: HTTP 400")
        if position.iupd not in self.stored:  # 409-aware, as the adapter
            self._create(position)
        return GpdPosition(position.iupd, self.stored[position.iupd])

    def create_many(self, tenant: Tenant, batch: list[PaymentPosition], *, publish: bool) -> None:
        self.bulk_calls += 1
        if self.unavailable:
            self.unavailable -= 1
            raise GpdUnavailable("fake: GPD down")
        if any(p.request.debtor.fiscal_code in self.refuse for p in batch):
            raise GpdRejected("GPD refused to create the positions in bulk: HTTP 400")
        if any(p.iupd in self.stored for p in batch):
            for p in batch:
                self.create(tenant, p, publish=publish)
        else:
            for p in batch:
                self._create(p)
        if self.crash_after_bulk:
            self.crash_after_bulk -= 1
            raise Crash()

    def get(self, tenant: Tenant, iupd: str) -> GpdPosition | None:
        return GpdPosition(iupd, self.stored[iupd]) if iupd in self.stored else None

    def publish(self, tenant: Tenant, iupd: str) -> GpdPosition:
        return GpdPosition(iupd, "VALID")

    def invalidate(self, tenant: Tenant, iupd: str) -> GpdPosition:
        return GpdPosition(iupd, "INVALID")

    def delete(self, tenant: Tenant, iupd: str) -> None:
        self.stored.pop(iupd, None)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def gpd() -> BulkGpd:
    return BulkGpd()


@pytest.fixture
def campaigns(database: Database, gpd: BulkGpd) -> Campaigns:
    app = Positions(database, registry(tenant(), tenant("lodi", segregation="12")), gpd, today=lambda: TODAY)
    return Campaigns(app, batch_size=4)


def good_csv(rows: int) -> str:
    codes = [CITIZEN, OTHER_CITIZEN]
    lines = [HEADER] + [f"{codes[i % 2]};Famiglia {i};{100 + i},50;31/03/2027;TARI 2027 rata unica;"
                        for i in range(rows)]
    return "\n".join(lines) + "\n"


def parse(text: str | bytes) -> list:  # type: ignore[type-arg]
    return parse_campaign(text, campaign_id="c1", today=TODAY, default_iban=IBAN, allowed_ibans=(IBAN,))


# -- parsing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "cents"), [("123,45", 12345), ("123.45", 12345), ("1.234,56", 123456),
                                            ("1,234.56", 123456), ("€ 16", 1600), ("0,5", 50), ("7", 700)])
def test_amounts_as_spreadsheets_write_them(raw: str, cents: int) -> None:
    assert parse_amount(raw) == cents


@pytest.mark.parametrize("raw", ["0", "0,00", "-5", "12,345", "1.234", "abc", "", "100000000,00", "1,2,3"])
def test_bad_amounts_are_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_amount(raw)


def test_dates() -> None:
    assert parse_date("2027-03-31") == parse_date("31/03/2027") == date(2027, 3, 31)
    with pytest.raises(ValidationFailed):
        parse_date("31.03.2027")


def test_each_row_is_judged_on_its_own() -> None:
    text = "\ufeff" + "\n".join([
        "fiscal_code,name,amount,due_date,description,iban",
        f"{CITIZEN},Mario Rossi,\"120,50\",2027-01-31,TARI 2027,",
        "RSSMRA85T10A562X,Mario Rossi,10,2027-01-31,TARI 2027,",  # wrong check character
        f"{CITIZEN},Mario Rossi,0,2027-01-31,TARI 2027,",
        f"{CITIZEN},Mario Rossi,10,2026-11-20,TARI 2027,",  # yesterday
        f"{CITIZEN},Mario Rossi,10,2027-01-31,{'x' * 141},",
        f"{CITIZEN},Mario Rossi,10,2027-01-31,TARI 2027,IT60X0542811101000000123456",  # not the Comune's
        f"{CITIZEN},Mario Rossi,10,2027-01-31",
        f"{CITIZEN},Mario Rossi,10,2027-01-31,TARI 2027,{IBAN}",
        "",
    ])
    rows = parse(text.encode("utf-8"))
    assert [r.number for r in rows] == list(range(1, 9))
    assert [r.error is None for r in rows] == [True, False, False, False, False, False, False, True]
    first = rows[0].request
    assert first is not None and first.amount_cents == 12050 and first.reference == "c1:1"
    assert first.purpose == "campaign" and first.campaign_id == "c1" and first.transfers[0].iban == IBAN
    errors = [r.error or "" for r in rows]
    assert "fiscal code" in errors[1] and "amount" in errors[2] and "past" in errors[3]
    assert "description" in errors[4] and "IBAN" in errors[5] and "fields" in errors[6]
    assert all(CITIZEN not in e for e in errors)  # errors never echo personal data


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"), ("   \n\n", "empty"), (";", "empty"), (";;\n ; \n", "empty"),
    (HEADER + "\nRSSMRA85T10A562S;Ma\x00rio;10;31/12/2099;TARI\n", "NUL"), (HEADER + "\n", "no rows"),
    ("nome;importo\nMario;10\n", "lacks column"), (b"\xff\xfe\x00", "UTF-8"),
    ('codice_fiscale;nominativo;importo;scadenza;causale\n"unclosed;x;1;2027-01-01;y\n', "well formed"),
    ("fiscal_code;cf;name;amount;due_date;description\n", "twice"),
])
def test_a_file_that_is_no_campaign_is_refused_whole(text: str | bytes, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        parse(text)


# -- upload and processing ----------------------------------------------------------------------------
def test_upload_stores_every_row_with_its_error(campaigns: Campaigns, database: Database) -> None:
    text = good_csv(5) + "XXXXXX;Nessuno;10;31/03/2027;TARI;\n"
    view = campaigns.upload("cremona", "TARI 2027", text)
    assert view["total_rows"] == 6 and view["valid_rows"] == 5 and view["status"] == "running"
    assert view["counts"] == {"invalid": 1, "pending": 5, "created": 0, "failed": 0}
    assert view["errors"] == [{"row": 6, "error": view["errors"][0]["error"]}]
    with database.transaction() as session:
        refs = session.execute(sa.select(campaign_rows.c.reference).order_by(campaign_rows.c.row_number)).scalars()
        assert list(refs) == [f"{view['campaign_id']}:{n}" for n in range(1, 6)] + [None]


def test_rows_become_published_positions_with_their_events(campaigns: Campaigns, database: Database,
                                                           gpd: BulkGpd) -> None:
    view = campaigns.upload("cremona", "TARI 2027", good_csv(10))
    cid = view["campaign_id"]
    assert campaigns.process("cremona") == 10
    assert gpd.bulk_calls == 3  # 4 + 4 + 2
    assert len(gpd.created) == 10 and set(gpd.created.values()) == {1}
    progress = campaigns.progress("cremona", cid)
    assert progress["status"] == "done" and progress["counts"]["created"] == 10
    with database.transaction() as session:
        stored = session.execute(sa.select(positions.c.status, positions.c.reference, positions.c.campaign_id,
                                           positions.c.amount_cents).order_by(positions.c.amount_cents)).all()
        bodies = session.execute(sa.select(outbox.c.body)).scalars().all()
    assert {s.status for s in stored} == {"published"} and {s.campaign_id for s in stored} == {cid}
    assert stored[0].amount_cents == 10050 and stored[0].reference == f"{cid}:1"
    events = [parse_event(json.loads(b)) for b in bodies]
    assert len(events) == 10 and {e.data.campaign_id for e in events} == {cid}
    report = campaigns.report("cremona", cid)
    assert [item["row"] for item in report["items"]] == list(range(1, 11))
    assert all(item["status"] == "created" and len(item["notice_number"]) == 18 for item in report["items"])


def test_a_row_gpd_refuses_fails_alone(campaigns: Campaigns, database: Database, gpd: BulkGpd) -> None:
    gpd.refuse = {OTHER_CITIZEN}
    cid = campaigns.upload("cremona", "TARI", good_csv(6))["campaign_id"]
    campaigns.process("cremona")
    counts = campaigns.progress("cremona", cid)["counts"]
    assert counts == {"invalid": 0, "pending": 0, "created": 3, "failed": 3}
    failed = campaigns.report("cremona", cid, status="failed")["items"]
    assert [f["row"] for f in failed] == [2, 4, 6] and all("HTTP 400" in f["error"] for f in failed)
    with database.transaction() as session:  # refused drafts are gone, the others published
        assert session.execute(sa.select(sa.func.count()).select_from(positions)).scalar_one() == 3


def test_gpd_unavailable_leaves_rows_pending_until_the_next_run(campaigns: Campaigns, gpd: BulkGpd) -> None:
    gpd.unavailable = 1
    cid = campaigns.upload("cremona", "TARI", good_csv(5))["campaign_id"]
    assert campaigns.process("cremona") == 0
    assert campaigns.progress("cremona", cid)["counts"]["pending"] == 5
    assert campaigns.process("cremona") == 5
    assert campaigns.progress("cremona", cid)["status"] == "done"
    assert set(gpd.created.values()) == {1}


def test_a_crash_after_gpd_answered_resumes_without_duplicates(campaigns: Campaigns, database: Database,
                                                               gpd: BulkGpd) -> None:
    cid = campaigns.upload("cremona", "TARI", good_csv(10))["campaign_id"]
    campaigns.process_batch("cremona", cid)  # batch 1 fine
    gpd.crash_after_bulk = 1
    with pytest.raises(Crash):
        campaigns.process_batch("cremona", cid)  # batch 2 on GPD, not committed here
    assert campaigns.progress("cremona", cid)["counts"] == {"invalid": 0, "pending": 6, "created": 4, "failed": 0}
    campaigns.process("cremona")  # "restart"
    assert len(gpd.created) == 10 and set(gpd.created.values()) == {1}  # each position once at GPD
    with database.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(positions)).scalar_one() == 10
        assert session.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 10
    assert campaigns.progress("cremona", cid)["counts"]["created"] == 10


def test_campaigns_belong_to_their_tenant(campaigns: Campaigns) -> None:
    cid = campaigns.upload("cremona", "TARI", good_csv(1))["campaign_id"]
    with pytest.raises(NotFound):
        campaigns.progress("lodi", cid)
    with pytest.raises(NotFound):
        campaigns.report("lodi", cid)
    with pytest.raises(ValidationFailed):
        campaigns.report("cremona", cid, status="bogus")
    with pytest.raises(ValidationFailed):
        campaigns.upload("cremona", "", good_csv(1))


def test_a_campaign_of_only_bad_rows_is_done_at_once(campaigns: Campaigns, gpd: BulkGpd) -> None:
    view = campaigns.upload("cremona", "TARI", HEADER + "\nXX;a;1;31/03/2027;b;\n")
    assert view["status"] == "done" and view["counts"]["invalid"] == 1
    assert campaigns.process("cremona") == 0 and gpd.bulk_calls == 0


# -- idempotent uploads ------------------------------------------------------------------------------
def test_a_retried_upload_with_its_key_answers_the_same_campaign(campaigns: Campaigns, database: Database,
                                                                 gpd: BulkGpd) -> None:
    text = good_csv(6) + "XXXXXX;Nessuno;10;31/03/2027;TARI;\n"
    first = campaigns.upload("cremona", "TARI 2027", text, idempotency_key="upload-1")
    assert first["replayed"] is False
    again = campaigns.upload("cremona", "TARI 2027", text.encode(), idempotency_key="upload-1")  # same bytes
    assert again["replayed"] is True and again["campaign_id"] == first["campaign_id"]
    assert again["errors"] == first["errors"] and again["total_rows"] == 7
    campaigns.process("cremona")
    after = campaigns.upload("cremona", "TARI 2027", text, idempotency_key="upload-1")
    assert after["campaign_id"] == first["campaign_id"] and after["counts"]["created"] == 6
    with database.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(positions)).scalar_one() == 6
        assert session.execute(sa.select(sa.func.count()).select_from(campaign_rows)).scalar_one() == 7
    assert len(gpd.created) == 6


def test_the_same_key_with_other_content_is_a_conflict(campaigns: Campaigns) -> None:
    campaigns.upload("cremona", "TARI 2027", good_csv(2), idempotency_key="upload-2")
    with pytest.raises(IdempotencyConflict):
        campaigns.upload("cremona", "TARI 2027", good_csv(3), idempotency_key="upload-2")
    with pytest.raises(IdempotencyConflict):
        campaigns.upload("cremona", "TARI 2028", good_csv(2), idempotency_key="upload-2")  # another name
    other = campaigns.upload("lodi", "TARI 2027", good_csv(3), idempotency_key="upload-2")  # keys are per Comune
    assert other["replayed"] is False
    unkeyed = [campaigns.upload("cremona", "TARI 2027", good_csv(2))["campaign_id"] for _ in range(2)]
    assert len(set(unkeyed)) == 2  # without a key every upload is a campaign


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "chiave-è"])
def test_a_malformed_key_is_refused(campaigns: Campaigns, key: str) -> None:
    with pytest.raises(ValidationFailed, match="Idempotency-Key"):
        campaigns.upload("cremona", "TARI", good_csv(1), idempotency_key=key)


def test_two_concurrent_uploads_with_one_key_make_one_campaign(campaigns: Campaigns, database: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The second request checked before the first committed: the unique key sends it to the replay."""
    original = campaigns._replay
    calls: list[int] = []

    def late_first_check(tenant_id: str, key: str, digest: str) -> dict[str, object] | None:
        calls.append(1)
        if len(calls) == 1:  # the concurrent twin's commit lands right after our check
            campaigns._store(campaigns.app._tenant("cremona"), "TARI", good_csv(2), key, digest)
            return None
        return original(tenant_id, key, digest)

    monkeypatch.setattr(campaigns, "_replay", late_first_check)
    answer = campaigns.upload("cremona", "TARI", good_csv(2), idempotency_key="race")
    assert answer["replayed"] is True and len(calls) == 2
    with database.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(campaigns_table)).scalar_one() == 1
