"""The creditor-institution station (paForNode) and the one place receipts are applied.

Messages are built and read through pagoPA's XSDs (as the Nodo twin does), so every reply checked
here is also schema-valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.nodo.app import receipt_document, receipt_xml
from services.pagopa.application import Positions
from services.pagopa.domain import nodo
from services.pagopa.domain.positions import PaymentPosition, PositionStatus
from services.pagopa.models import receipts
from services.pagopa.ports import ReceiptSummary
from services.pagopa.receipts import Receipts
from sportello.db import Database
from sportello.errors import ValidationFailed
from sportello.tables import outbox
from sportello.tenants import Tenant
from tests.unit.pagopa.support import FakeGpd, migrated, registry, request, tenant

ORG = "00297960197"
ADDRESSING = {"idPA": ORG, "idBrokerPA": "00297960197", "idStation": "00297960197_01"}
COMPLETED = "it.sportello.pagopa.payment.completed.v1"


class Clock:
    def __init__(self) -> None:
        self.today = date(2026, 11, 21)

    def __call__(self) -> date:
        return self.today


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def positions(database: Database, clock: Clock) -> Positions:
    return Positions(database, registry(tenant()), FakeGpd(), today=clock)


@pytest.fixture
def station(positions: Positions) -> Receipts:
    return Receipts(positions)


def call(station: Receipts, operation: str, document: dict[str, Any]) -> dict[str, Any]:
    return nodo.read_response(operation, station.handle(nodo.request_envelope(operation, document)))


def qr(position: PaymentPosition | str, **addressing: str) -> dict[str, Any]:
    number = position if isinstance(position, str) else position.notice_number
    return {**ADDRESSING, **addressing, "qrCode": {"fiscalCode": ORG, "noticeNumber": number}}


def pay(station: Receipts, position: PaymentPosition, receipt_id: str = "rcpt-0001") -> dict[str, Any]:
    got = call(station, "paGetPaymentV2", qr(position))
    assert got["outcome"] == "OK", got
    document = receipt_document(addressing=ADDRESSING, notice_number=position.notice_number, fiscal_code=ORG,
                                payment=got["data"], receipt_id=receipt_id)
    return call(station, "paSendRTV2", document)


def completed_events(database: Database) -> list[dict[str, Any]]:
    with database.transaction() as session:
        rows = session.execute(sa.select(outbox.c.event_type, outbox.c.body)).all()
    return [json.loads(r.body) for r in rows if r.event_type == COMPLETED]


def receipt_rows(database: Database) -> list[Any]:
    with database.transaction() as session:
        return list(session.execute(sa.select(receipts).order_by(receipts.c.id)))


def test_verify_and_get_payment_describe_the_position(station: Receipts, positions: Positions) -> None:
    position = positions.create("cremona", request(amount=2550))
    verify = call(station, "paVerifyPaymentNotice", qr(position))
    assert verify["outcome"] == "OK"
    option = verify["paymentList"]["paymentOptionDescription"]
    assert str(option["amount"]) == "25.50" and option["options"] == "EQ" and option["dueDate"] == "2099-01-31"
    assert verify["fiscalCodePA"] == ORG
    got = call(station, "paGetPaymentV2", qr(position))["data"]
    assert got["creditorReferenceId"] == position.iuv and str(got["paymentAmount"]) == "25.50"
    [transfer] = got["transferList"]["transfer"]
    assert transfer["IBAN"] == "IT58A0503411400000000012345" and str(transfer["transferAmount"]) == "25.50"
    assert got["debtor"]["uniqueIdentifier"] == {"entityUniqueIdentifierType": "F",
                                                 "entityUniqueIdentifierValue": "RSSMRA85T10A562S"}


def test_a_receipt_pays_the_position_once(station: Receipts, positions: Positions, database: Database) -> None:
    position = positions.create("cremona", request(amount=1600))
    assert pay(station, position)["outcome"] == "OK"
    assert positions.get("cremona", position.id).status is PositionStatus.PAID
    [event] = completed_events(database)
    assert event["data"]["amount_cents"] == 1600 and event["data"]["receipt_id"] == "rcpt-0001"
    # the Nodo retries the same receipt: answered OK again, nothing changes
    document = receipt_document(addressing=ADDRESSING, notice_number=position.notice_number, fiscal_code=ORG,
                                payment=call_payment_shape(position), receipt_id="rcpt-0001")
    assert call(station, "paSendRTV2", document)["outcome"] == "OK"
    assert len(completed_events(database)) == 1 and len(receipt_rows(database)) == 1
    # a paid notice is no longer payable
    assert call(station, "paVerifyPaymentNotice", qr(position))["fault"]["faultCode"] == "PAA_PAGAMENTO_DUPLICATO"
    # a second, different receipt for the same notice is a double payment: recorded, refused
    second = call(station, "paSendRTV2", {**document, "receipt": {**document["receipt"], "receiptId": "rcpt-0002"}})
    assert second["fault"]["faultCode"] == "PAA_RECEIPT_DUPLICATA"
    assert [r.disposition for r in receipt_rows(database)] == ["applied", "duplicate_payment"]
    assert len(completed_events(database)) == 1


def call_payment_shape(position: PaymentPosition) -> dict[str, Any]:
    r = position.request
    return {"creditorReferenceId": position.iuv, "paymentAmount": nodo.euros(r.amount_cents),
            "description": r.description, "companyName": "Comune di Cremona",
            "debtor": {"uniqueIdentifier": {"entityUniqueIdentifierType": "F",
                                            "entityUniqueIdentifierValue": r.debtor.fiscal_code},
                       "fullName": r.debtor.full_name},
            "transferList": {"transfer": [{"idTransfer": 1, "transferAmount": nodo.euros(r.amount_cents),
                                           "fiscalCodePA": ORG, "IBAN": r.transfers[0].iban,
                                           "remittanceInformation": "x", "transferCategory": "9/0101101IM/"}]}}


UNKNOWN = "301" + "0000000009999" + "00"


def test_unknown_notice_is_sconosciuto_and_its_receipt_is_recorded(station: Receipts, database: Database) -> None:
    number = nodo_valid(UNKNOWN)
    assert call(station, "paVerifyPaymentNotice", qr(number))["fault"]["faultCode"] == "PAA_PAGAMENTO_SCONOSCIUTO"
    assert call(station, "paGetPaymentV2", qr(number))["fault"]["faultCode"] == "PAA_PAGAMENTO_SCONOSCIUTO"
    fake = PaymentPosition(id="x", tenant="cremona", iupd="x", iuv=number[1:], notice_number=number,
                           payee_fiscal_code=ORG, company_name="Comune di Cremona", request=request())
    document = receipt_document(addressing=ADDRESSING, notice_number=number, fiscal_code=ORG,
                                payment=call_payment_shape(fake), receipt_id="rcpt-stray")
    reply = call(station, "paSendRTV2", document)
    assert reply["outcome"] == "KO" and reply["fault"]["faultCode"] == "PAA_PAGAMENTO_SCONOSCIUTO"
    [row] = receipt_rows(database)
    assert row.disposition == "unknown_position" and row.position_id is None and row.amount_cents == 1600
    assert completed_events(database) == []


def nodo_valid(number: str) -> str:
    from services.pagopa.domain.iuv import notice_for

    return notice_for(number[1:3], int(number[3:16])).notice_number


def test_expired_and_invalidated_positions(station: Receipts, positions: Positions, clock: Clock,
                                           database: Database) -> None:
    soon = positions.create("cremona", request(due=clock.today + timedelta(days=1)))
    withdrawn = positions.create("cremona", request())
    positions.invalidate("cremona", withdrawn.id)
    clock.today += timedelta(days=3)
    # past its due date but not yet swept by the timer: already SCADUTO for the Nodo
    assert call(station, "paVerifyPaymentNotice", qr(soon))["fault"]["faultCode"] == "PAA_PAGAMENTO_SCADUTO"
    assert positions.expire_overdue("cremona") == 1
    assert call(station, "paGetPaymentV2", qr(soon))["fault"]["faultCode"] == "PAA_PAGAMENTO_SCADUTO"
    assert call(station, "paVerifyPaymentNotice", qr(withdrawn))["fault"]["faultCode"] == "PAA_PAGAMENTO_ANNULLATO"
    late = receipt_document(addressing=ADDRESSING, notice_number=soon.notice_number, fiscal_code=ORG,
                            payment=call_payment_shape(soon), receipt_id="rcpt-late")
    assert call(station, "paSendRTV2", late)["fault"]["faultCode"] == "PAA_PAGAMENTO_SCADUTO"
    assert [r.disposition for r in receipt_rows(database)] == ["expired_position"]
    assert positions.get("cremona", soon.id).status is PositionStatus.EXPIRED


@pytest.mark.parametrize(("addressing", "fault"), [
    ({"idPA": "01234560199"}, "PAA_ID_DOMINIO_ERRATO"),
    ({"idBrokerPA": "99999999999"}, "PAA_ID_INTERMEDIARIO_ERRATO"),
    ({"idStation": "00297960197_99"}, "PAA_STAZIONE_INT_ERRATA"),
])
def test_addressing_is_checked(station: Receipts, positions: Positions, addressing: dict[str, str],
                               fault: str) -> None:
    position = positions.create("cremona", request())
    reply = call(station, "paVerifyPaymentNotice", qr(position, **addressing))
    assert reply["outcome"] == "KO" and reply["fault"]["faultCode"] == fault


def test_a_request_breaking_the_xsd_gets_sintassi_xsd(station: Receipts) -> None:
    message = nodo.request_envelope("paVerifyPaymentNotice", qr("301000000000999900")).replace(
        b"<noticeNumber>301000000000999900</noticeNumber>", b"<noticeNumber>30100000000099990X</noticeNumber>")
    reply = nodo.read_response("paVerifyPaymentNotice", station.handle(message))
    assert reply["outcome"] == "KO" and reply["fault"]["faultCode"] == "PAA_SINTASSI_XSD"


@pytest.mark.parametrize("body", [b"not xml", b"<a/>", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
                                  nodo.envelope(nodo.encode("paSendRTV2Response", {"outcome": "OK"}))])
def test_a_body_that_is_no_paForNode_request_is_a_validation_error(station: Receipts, body: bytes) -> None:
    with pytest.raises(ValidationFailed):
        station.handle(body)


class FakeGpdReceipts:
    """GPD's receipts API in memory (the port)."""

    def __init__(self) -> None:
        self.receipts: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def list_receipts(self, tenant: Tenant, *, since: str, page: int, page_size: int
                      ) -> tuple[list[ReceiptSummary], int]:
        return [ReceiptSummary(iuv, None) for iuv in self.receipts], (1 if self.receipts else 0)

    def get_receipt(self, tenant: Tenant, iuv: str) -> bytes | None:
        self.fetched.append(iuv)
        return self.receipts.get(iuv)


def test_gpd_receipts_path_and_soap_path_pay_once(positions: Positions, database: Database) -> None:
    gpd = FakeGpdReceipts()
    station = Receipts(positions, gpd)
    first, second = positions.create("cremona", request()), positions.create("cremona", request(amount=900))
    for position, receipt_id in ((first, "rcpt-a"), (second, "rcpt-b")):
        document = receipt_document(addressing=ADDRESSING, notice_number=position.notice_number, fiscal_code=ORG,
                                    payment=call_payment_shape(position), receipt_id=receipt_id)
        gpd.receipts[position.iuv] = receipt_xml(document).encode()
    # the Nodo delivered the first one to the station already
    assert call(station, "paSendRTV2", receipt_document(
        addressing=ADDRESSING, notice_number=first.notice_number, fiscal_code=ORG,
        payment=call_payment_shape(first), receipt_id="rcpt-a"))["outcome"] == "OK"
    assert station.poll_gpd("cremona", since=date(2026, 11, 1)) == {"known": 1, "applied": 1}
    assert gpd.fetched == [second.iuv]  # a receipt known by its IUV is not fetched again
    assert station.poll_gpd("cremona", since=date(2026, 11, 1)) == {"known": 2}
    assert {positions.get("cremona", p.id).status for p in (first, second)} == {PositionStatus.PAID}
    assert len(completed_events(database)) == 2
    assert sorted(r.source for r in receipt_rows(database)) == ["gpd", "nodo"]


def test_an_unreadable_gpd_receipt_is_counted_not_applied(positions: Positions, database: Database) -> None:
    gpd = FakeGpdReceipts()
    gpd.receipts["01000000000000199"] = b"<notAReceipt/>"
    assert Receipts(positions, gpd).poll_gpd("cremona", since=date(2026, 11, 1)) == {"unreadable": 1}
    assert receipt_rows(database) == []
