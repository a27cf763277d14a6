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
  `{"reporting_status": 503, "count": n}` — the next n reporting-flow calls fail with that status;
- `GET /__twin/exchanges` — every exchange: operation, outcome, fault code, reply valid or not;
- `POST /__twin/flows` `{"fiscalCode", ["mismatches": {"<iuv>": "12.34"}, "omit": ["<iuv>"],
  "extra": [{"iuv", "amount", ["receiptId"]}]]}` — the PSPs settle: one reporting flow
  (FlussoRiversamento) of every receipt paid to that Comune and not yet reported, with the injected
  differences (another amount, a payment left out, money for a notice the Comune never saw);
- `POST /__twin/reset`.
Reporting flows are served as the Nodo does (`nodeForPa.wsdl`, SOAP at `/nodo-auth/node-for-pa/v1`):
`nodoChiediElencoFlussiRendicontazione` and `nodoChiediFlussoRendicontazione`, requests and answers
validated by nodeForPa.xsd; broker, station, domain and (when the tenant file names it) the
station's password are checked, with the Nodo's PPT_* faults.
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

from services.pagopa.domain import nodo, reporting
from sportello.tenants import SecretSource

ROOT = Path(__file__).resolve().parents[2]
ROME = ZoneInfo("Europe/Rome")
REPORTING_PATH = "/nodo-auth/node-for-pa/v1"
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


def passwords_from_tenant_files(tenants_dir: Path | None = None, secrets: SecretSource | None = None
                                ) -> dict[str, str]:
    """idStation -> the station's password on the Nodo (`pagopa.nodo_password`), where it resolves."""
    folder = tenants_dir or Path(os.environ.get("SPORTELLO_TENANTS_DIR", ROOT / "sandbox" / "tenants"))
    if secrets is None:
        where = os.environ.get("SPORTELLO_SECRETS_DIR")
        secrets = SecretSource(secrets_dir=Path(where) if where else None)
    out: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        section = (yaml.safe_load(path.read_text()) or {}).get("pagopa") or {}
        password = section.get("nodo_password")
        if isinstance(password, dict) and set(password) == {"secret"}:
            password = secrets.find(str(password["secret"]))
        if section.get("station_id") and isinstance(password, str) and password:
            out[str(section["station_id"])] = password
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
                 client: httpx.Client | None = None, passwords: dict[str, str] | None = None) -> None:
        self.station_url = station_url
        self.stations = stations
        self.passwords = passwords or {}
        self.gpd_url = gpd_url.rstrip("/") if gpd_url else None
        self.client = client or httpx.Client(timeout=30.0)
        self.lock = threading.Lock()
        self.url_map = Map([
            Rule("/__twin/pay", endpoint="pay", methods=["POST"]),
            Rule("/__twin/faults", endpoint="faults", methods=["POST"]),
            Rule("/__twin/exchanges", endpoint="exchanges", methods=["GET"]),
            Rule("/__twin/reset", endpoint="reset", methods=["POST"]),
            Rule("/__twin/flows", endpoint="flows", methods=["POST"]),
            Rule(REPORTING_PATH, endpoint="reporting", methods=["POST"]),
        ])
        self.exchanges: list[dict[str, Any]] = []
        self.fault: dict[str, Any] = {}
        self.reporting_fault: dict[str, Any] = {}  # {"reporting_status": 503, "count": n}: the SOAP endpoint fails
        self.unreported: dict[str, list[dict[str, Any]]] = {}  # idPA -> receipts paid, not yet in a flow
        self.flows: dict[str, dict[str, tuple[datetime, bytes]]] = {}  # idPA -> flow id -> (date, XML)
        self.flow_serial = 0

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
            if document["receipt"]["outcome"] == "OK" and sent.get("http_status") is not None:
                self._settle_later(fiscal_code, document["receipt"])
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

    # -- reporting flows ---------------------------------------------------------------------------
    def _settle_later(self, fiscal_code: str, receipt: dict[str, Any]) -> None:
        """The PSP collected the money: it will be in the next flow to this Comune (whatever the
        station answered — a receipt the Comune refused is money it still receives)."""
        paid_on = str(receipt["paymentDateTime"])[:10]
        with self.lock:
            self.unreported.setdefault(fiscal_code, []).append({
                "iuv": str(receipt["creditorReferenceId"]), "receipt_id": str(receipt["receiptId"]),
                "amount_cents": nodo.cents(receipt["paymentAmount"]), "paid_on": paid_on})

    def publish_flows(self, fiscal_code: str | None = None, *, mismatches: dict[str, str] | None = None,
                      omit: list[str] | None = None, extra: list[dict[str, Any]] | None = None) -> list[str]:
        """Close one flow per Comune (or for `fiscal_code`) of what is unreported; the flow ids."""
        now = datetime.now(ROME).replace(microsecond=0)
        made = []
        with self.lock:
            codes = [fiscal_code] if fiscal_code else [c for c, items in self.unreported.items() if items]
            for code in codes:
                items = list(self.unreported.get(code, []))  # forgotten only once the flow is made
                changed = mismatches or {}
                lines = [reporting.FlowPayment(
                    i["iuv"], i["receipt_id"],
                    nodo.cents(changed[i["iuv"]]) if i["iuv"] in changed else i["amount_cents"], "0", i["paid_on"])
                    for i in items if i["iuv"] not in (omit or [])]
                for n, e in enumerate(extra or [], start=1):
                    lines.append(reporting.FlowPayment(str(e["iuv"]), str(e.get("receiptId") or f"EXTRA{n}"),
                                                       nodo.cents(e["amount"]), "0", now.date().isoformat()))
                if not lines:
                    continue
                self.flow_serial += 1
                flow_id = f"{now.date().isoformat()}{PSP['idPSP']}-{self.flow_serial:04d}{uuid.uuid4().hex[:6]}"
                xml = reporting.flow_xml(flow_id=flow_id, flow_date=now, settlement_id=f"SETTLE{uuid.uuid4().hex[:12]}",
                                         settlement_date=now.date().isoformat(), psp_id=PSP["idPSP"],
                                         receiver_fiscal_code=code, payments=lines)
                self.flows.setdefault(code, {})[flow_id] = (now, xml)
                self.unreported.pop(code, None)
                made.append(flow_id)
        return made

    def on_flows(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
            fiscal_code = str(body["fiscalCode"])
            made = self.publish_flows(fiscal_code, mismatches=body.get("mismatches"), omit=body.get("omit"),
                                      extra=body.get("extra"))
        except (ValueError, KeyError, TypeError) as exc:
            return _json({"error": f"send {{fiscalCode, [mismatches, omit, extra]}}: {exc}"}, 400)
        return _json({"flowIds": made})

    def on_reporting(self, request: Request) -> Response:
        """nodeForPa: the list of a station's flows, or one flow (base64)."""
        with self.lock:
            fault = self.reporting_fault.get("reporting_status") if self.reporting_fault.get("count", 0) > 0 else None
            if fault:
                self.reporting_fault["count"] -= 1
        if fault:
            return Response(b"", status=int(fault))
        try:
            operation, data = reporting.read_request(request.get_data())
        except nodo.NotSoap as exc:
            return Response(nodo.soap_fault(str(exc)), status=500, mimetype="text/xml")
        except reporting.NodoFault as exc:
            operation = exc.operation or reporting.LIST
            return self._reporting_reply(operation, reporting.fault_response(operation, exc.code, exc.description))
        try:
            domains = self._domains(data)
        except reporting.NodoFault as exc:
            return self._reporting_reply(operation, reporting.fault_response(operation, exc.code, exc.description))
        with self.lock:
            held = {fid: flow for code in domains for fid, flow in self.flows.get(code, {}).items()}
        if operation == reporting.LIST:
            refs = [reporting.FlowRef(fid, when) for fid, (when, _xml) in sorted(held.items())]
            return self._reporting_reply(operation, reporting.list_response(refs))
        found = held.get(str(data["identificativoFlusso"]))
        if found is None:
            return self._reporting_reply(operation, reporting.fault_response(operation, "PPT_ID_FLUSSO_SCONOSCIUTO"))
        return self._reporting_reply(operation, reporting.fetch_response(found[1]))

    def _domains(self, data: dict[str, Any]) -> list[str]:
        """The creditor institutions this broker/station may ask about (PPT_* fault otherwise)."""
        broker, station = str(data["identificativoIntermediarioPA"]), str(data["identificativoStazioneIntermediarioPA"])
        if broker not in {b for b, _s in self.stations.values()}:
            raise reporting.NodoFault("PPT_INTERMEDIARIO_PA_SCONOSCIUTO")
        domains = [code for code, (b, s) in self.stations.items() if b == broker and s == station]
        if not domains:
            raise reporting.NodoFault("PPT_STAZIONE_INT_PA_SCONOSCIUTA")
        expected = self.passwords.get(station)
        if expected is not None and expected != str(data["password"]):
            raise reporting.NodoFault("PPT_AUTENTICAZIONE")
        wanted = data.get("identificativoDominio")
        if wanted:
            if str(wanted) not in domains:
                raise reporting.NodoFault("PPT_DOMINIO_SCONOSCIUTO")
            domains = [str(wanted)]
        return domains

    def _reporting_reply(self, operation: str, body: bytes) -> Response:
        with self.lock:
            self.exchanges.append({"operation": operation, "valid": True})
        return Response(body, mimetype="text/xml")

    def on_faults(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        fault = dict(body) if isinstance(body, dict) else {}
        fault.setdefault("count", 1)
        with self.lock:
            if "reporting_status" in fault:
                self.reporting_fault = fault
            else:
                self.fault = fault
        return _json({"faults": fault})

    def on_exchanges(self, request: Request) -> Response:
        with self.lock:
            return _json({"exchanges": list(self.exchanges)})

    def on_reset(self, request: Request) -> Response:
        with self.lock:
            self.exchanges.clear()
            self.fault = {}
            self.reporting_fault = {}
            self.unreported.clear()
            self.flows.clear()
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
