"""The Nodo twin: plays pagoPA's Nodo dei Pagamenti towards a Comune's station.

Why: receipts reach a Comune because the Nodo calls its station — `paVerifyPaymentNotice` when a
citizen enters a notice at a PSP, `paGetPaymentV2` when he pays, `paSendRTV2` with the receipt.
This twin does exactly that, over HTTP/SOAP, with messages encoded and validated by pagoPA's own
XSDs; every reply from the station is validated too, and a reply that breaks the schema is
reported as such (the real Nodo would answer PPT_STAZIONE_INT_PA_ERRORE_RESPONSE).

Controls (not part of pagoPA):
- `POST /__twin/pay` `{"fiscalCode", "noticeNumber", ["idBrokerPA", "idStation", "stationUrl",
  "receiptId", "steps": ["verify", "get", "send"], "outcome": "OK"|"KO", "amount": "12.34"]}` — a
  citizen pays; answers what each step got (outcome, faultCode) and the receipt id;
- `POST /__twin/faults` `{"latency_ms": ms, "count": n}` — slow the next calls to the station;
- `GET /__twin/exchanges` — every exchange: operation, outcome, fault code, reply valid or not;
- `POST /__twin/reset`.
The GPD twin, when configured, is told about each receipt sent (so GPD's receipts API lists the
same receipt id: both paths, one payment).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from services.pagopa.domain import nodo

ROOT = Path(__file__).resolve().parents[2]
ROME = ZoneInfo("Europe/Rome")
PSP = {"idPSP": "SANDBOXPSP0", "PSPCompanyName": "PSP Sandbox", "idChannel": "SANDBOXPSP0_01",
       "channelDescription": "app"}


def stations_from_tenant_files(tenants_dir: Path | None = None) -> dict[str, tuple[str, str]]:
    """idPA -> (idBrokerPA, idStation), read from the same tenant files the platform reads."""
    folder = tenants_dir or Path(os.environ.get("SPORTELLO_TENANTS_DIR", ROOT / "sandbox" / "tenants"))
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        section = data.get("pagopa") or {}
        if data.get("fiscal_code") and section.get("broker_id") and section.get("station_id"):
            out[str(data["fiscal_code"])] = (str(section["broker_id"]), str(section["station_id"]))
    return out


def receipt_document(*, addressing: dict[str, str], notice_number: str, fiscal_code: str, payment: dict[str, Any],
                     receipt_id: str, outcome: str = "OK", paid_at: datetime | None = None,
                     amount: Any = None) -> dict[str, Any]:
    """`paSendRTV2Request` for a payment as `paGetPaymentV2` described it."""
    when = (paid_at or datetime.now(ROME)).replace(microsecond=0)
    transfers = []
    for t in payment["transferList"]["transfer"]:
        item: dict[str, Any] = {"idTransfer": t["idTransfer"], "transferAmount": t["transferAmount"],
                                "fiscalCodePA": t["fiscalCodePA"]}
        if "IBAN" in t:
            item["IBAN"] = t["IBAN"]
        else:  # a digital stamp: the PSP attaches the stamp (MBD) document
            item["MBDAttachment"] = base64.b64encode(b"<marcaDaBollo>sandbox</marcaDaBollo>").decode()
        item["remittanceInformation"] = t["remittanceInformation"]
        item["transferCategory"] = t["transferCategory"]
        transfers.append(item)
    debtor = {"uniqueIdentifier": payment["debtor"]["uniqueIdentifier"], "fullName": payment["debtor"]["fullName"]}
    return {
        **addressing,
        "receipt": {
            "receiptId": receipt_id, "noticeNumber": notice_number, "fiscalCode": fiscal_code, "outcome": outcome,
            "creditorReferenceId": payment["creditorReferenceId"],
            "paymentAmount": amount if amount is not None else payment["paymentAmount"],
            "description": payment["description"], "companyName": payment["companyName"], "debtor": debtor,
            "transferList": {"transfer": transfers}, **PSP, "paymentMethod": "creditCard",
            "fee": "1.00", "paymentDateTime": when.isoformat(), "applicationDate": when.date().isoformat(),
            "transferDate": when.date().isoformat(),
        },
    }


def receipt_xml(document: dict[str, Any]) -> str:
    from xml.etree import ElementTree

    return ElementTree.tostring(nodo.encode("paSendRTV2Request", document), encoding="unicode")


class NodoTwin:
    def __init__(self, *, station_url: str, stations: dict[str, tuple[str, str]], gpd_url: str | None = None,
                 client: httpx.Client | None = None) -> None:
        self.station_url = station_url
        self.stations = stations
        self.gpd_url = gpd_url.rstrip("/") if gpd_url else None
        self.client = client or httpx.Client(timeout=30.0)
        self.lock = threading.Lock()
        self.url_map = Map([
            Rule("/__twin/pay", endpoint="pay", methods=["POST"]),
            Rule("/__twin/faults", endpoint="faults", methods=["POST"]),
            Rule("/__twin/exchanges", endpoint="exchanges", methods=["GET"]),
            Rule("/__twin/reset", endpoint="reset", methods=["POST"]),
        ])
        self.exchanges: list[dict[str, Any]] = []
        self.fault: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
        except Exception:  # noqa: BLE001 - werkzeug's NotFound / MethodNotAllowed
            return _json({"error": "no such path"}, 404)(environ, start_response)
        response: Response = getattr(self, f"on_{endpoint}")(request, **args)
        return response(environ, start_response)

    # -- talking to the station ----------------------------------------------------------------
    def call(self, station_url: str, operation: str, document: dict[str, Any]) -> dict[str, Any]:
        """One SOAP exchange; the reply decoded through the XSD, or why it could not be."""
        with self.lock:
            fault = dict(self.fault)
            if fault.get("count", 0) > 0:
                self.fault["count"] -= 1
        if fault.get("count", 0) > 0 and fault.get("latency_ms"):
            time.sleep(fault["latency_ms"] / 1000)
        body = nodo.request_envelope(operation, document)
        record: dict[str, Any] = {"operation": operation}
        try:
            reply = self.client.post(station_url, content=body, headers={
                "Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation})
        except httpx.HTTPError as exc:
            record.update(outcome=None, error=f"transport: {type(exc).__name__}")
            return self._record(record)
        record["http_status"] = reply.status_code
        try:
            decoded = nodo.read_response(operation, reply.content)
        except (nodo.NotSoap, ValueError) as exc:
            record.update(outcome=None, error=f"invalid reply: {exc}", valid=False)
            return self._record(record)
        record.update(outcome=decoded["outcome"], valid=True,
                      faultCode=(decoded.get("fault") or {}).get("faultCode"), reply=decoded)
        return self._record(record)

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.exchanges.append({k: v for k, v in record.items() if k != "reply"})
        return record

    # -- controls ----------------------------------------------------------------------------------
    def on_pay(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
            fiscal_code, notice_number = str(body["fiscalCode"]), str(body["noticeNumber"])
        except (ValueError, KeyError, TypeError):
            return _json({"error": "send {fiscalCode, noticeNumber}"}, 400)
        broker, station = self.stations.get(fiscal_code, (None, None))
        broker, station = body.get("idBrokerPA", broker), body.get("idStation", station)
        if not broker or not station:
            return _json({"error": "unknown creditor institution: give idBrokerPA and idStation"}, 400)
        url = body.get("stationUrl") or self.station_url
        steps = body.get("steps") or ["verify", "get", "send"]
        addressing = {"idPA": fiscal_code, "idBrokerPA": broker, "idStation": station}
        qr = {"qrCode": {"fiscalCode": fiscal_code, "noticeNumber": notice_number}}
        result: dict[str, Any] = {}
        payment: dict[str, Any] | None = body.get("payment")
        if "verify" in steps:
            verify = self.call(url, "paVerifyPaymentNotice", {**addressing, **qr})
            result["verify"] = _summary(verify)
            if verify.get("outcome") != "OK":
                return _json(result)
        if "get" in steps:
            got = self.call(url, "paGetPaymentV2", {**addressing, **qr})
            result["get"] = _summary(got)
            if got.get("outcome") != "OK":
                return _json(result)
            payment = got["reply"]["data"]
        if "send" in steps:
            if payment is None:
                payment = _placeholder_payment(fiscal_code, notice_number, body.get("amount") or "1.00")
            receipt_id = str(body.get("receiptId") or uuid.uuid4().hex)
            document = receipt_document(addressing=addressing, notice_number=notice_number, fiscal_code=fiscal_code,
                                        payment=payment, receipt_id=receipt_id, outcome=body.get("outcome", "OK"),
                                        amount=body.get("amount"))
            sent = self.call(url, "paSendRTV2", document)
            result["send"] = _summary(sent)
            result["receiptId"] = receipt_id
            if self.gpd_url and document["receipt"]["outcome"] == "OK":
                result["gpd"] = self._tell_gpd(fiscal_code, notice_number, document)
        return _json(result)

    def _tell_gpd(self, fiscal_code: str, notice_number: str, document: dict[str, Any]) -> int | None:
        try:
            answer = self.client.post(f"{self.gpd_url}/__twin/pay/{fiscal_code}/{notice_number}",
                                      json={"receipt_xml": receipt_xml(document)}, timeout=10)
        except httpx.HTTPError:
            return None
        return answer.status_code

    def on_faults(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        with self.lock:
            self.fault = dict(body) if isinstance(body, dict) else {}
            self.fault.setdefault("count", 1)
        return _json({"faults": self.fault})

    def on_exchanges(self, request: Request) -> Response:
        with self.lock:
            return _json({"exchanges": list(self.exchanges)})

    def on_reset(self, request: Request) -> Response:
        with self.lock:
            self.exchanges.clear()
            self.fault = {}
        return _json({"reset": True})


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("outcome", "faultCode", "valid", "error", "http_status")}


def _placeholder_payment(fiscal_code: str, notice_number: str, amount: str) -> dict[str, Any]:
    """For a receipt sent without paGetPaymentV2 (tests of unknown notices): plausible content."""
    digest = hashlib.sha256(notice_number.encode()).hexdigest()[:8]
    return {
        "creditorReferenceId": notice_number[1:], "paymentAmount": amount, "description": f"pagamento {digest}",
        "companyName": "Ente sconosciuto",
        "debtor": {"uniqueIdentifier": {"entityUniqueIdentifierType": "F",
                                        "entityUniqueIdentifierValue": "ANONIMO"}, "fullName": "Anonimo"},
        "transferList": {"transfer": [{"idTransfer": 1, "transferAmount": amount, "fiscalCodePA": fiscal_code,
                                       "IBAN": "IT58A0503411400000000012345", "remittanceInformation": "pagamento",
                                       "transferCategory": "9/0101101IM/"}]},
    }


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")
