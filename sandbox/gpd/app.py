"""The GPD twin: a WSGI app speaking the GPD contract, with its validation, its limit and faults.

Why: the platform runs end to end without pagoPA, and the adapter is tested against something
that behaves like GPD — the same paths (`/gpd/debt-positions-service/v1|v2`), status codes
(201/200/400/401/404/409/429), the server-side rules GPD applies beyond its OpenAPI (amount =
sum of transfers, at most 5 transfers, iban xor stamp, due date not in the past), and the limit
of 100 calls / 10 s per subscription key (429 + Retry-After beyond it).

Test controls under `/__twin/` (not part of GPD):
- `POST /__twin/faults` `{"status": 500|503|429, "count": n, "retry_after": s, "latency_ms": ms,
  "malformed": bool}` — the next `count` GPD calls get that fault;
- `GET /__twin/requests` — how many calls it received, by method and path template, and status;
- `POST /__twin/pay/<org>/<nav>` — mark a published position paid (a citizen paid);
- `POST /__twin/reset` — forget everything.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

V1 = "/gpd/debt-positions-service/v1"
V2 = "/gpd/debt-positions-service/v2"
RECEIPTS = "/gpd/payments-receipts-service/v1"
LIMIT = 100
WINDOW_SECONDS = 10.0
_IBAN = re.compile(r"^[A-Za-z0-9]{1,35}$")
_PROVINCE = re.compile(r"^[A-Z]{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class Invalid(Exception):
    pass


def _problem(status: int, title: str, detail: str) -> Response:
    return Response(json.dumps({"title": title, "status": status, "detail": detail}), status=status,
                    mimetype="application/json")


def _parse_dt(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} is not a date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(obj: dict[str, Any], name: str, *, required: bool = True, max_len: int | None = None) -> None:
    value = obj.get(name)
    if value is None:
        if required:
            raise Invalid(f"{name} is required")
        return
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if max_len is not None and len(value) > max_len:
        raise Invalid(f"{name} longer than {max_len}")


def validate_position(body: Any, now: datetime) -> None:
    """PaymentPositionModel as GPD checks it (OpenAPI + DebtPositionValidation rules)."""
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    for name in ("iupd", "fiscalCode", "fullName"):
        _str(body, name)
    _str(body, "companyName", max_len=140)
    _str(body, "officeName", required=False, max_len=140)
    if body.get("type") not in ("F", "G"):
        raise Invalid("type must be F or G")
    if not isinstance(body.get("switchToExpired"), bool):
        raise Invalid("switchToExpired is required (boolean)")
    if "payStandIn" in body and not isinstance(body["payStandIn"], bool):
        raise Invalid("payStandIn must be a boolean")
    if "country" in body and not (isinstance(body["country"], str) and _COUNTRY.match(body["country"])):
        raise Invalid("country must be 2 capital letters")
    validity = _parse_dt(body["validityDate"], "validityDate") if body.get("validityDate") else None
    if validity is not None and validity < now:
        raise Invalid("validityDate must not be in the past")
    options = body.get("paymentOption")
    if not isinstance(options, list) or not options:
        raise Invalid("paymentOption must be a non-empty list")
    for option in options:
        if not isinstance(option, dict):
            raise Invalid("paymentOption items must be objects")
        _str(option, "iuv")
        _str(option, "description", max_len=140)
        amount = option.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            raise Invalid("amount must be an integer >= 1 (cents)")
        if not isinstance(option.get("isPartialPayment"), bool):
            raise Invalid("isPartialPayment is required (boolean)")
        due = _parse_dt(option.get("dueDate"), "dueDate")
        if due < (validity or now):
            raise Invalid("dueDate must not be before validityDate (or now)")
        if option.get("retentionDate") and _parse_dt(option["retentionDate"], "retentionDate") < due:
            raise Invalid("retentionDate must not be before dueDate")
        metadata = option.get("paymentOptionMetadata") or []
        if not isinstance(metadata, list) or len(metadata) > 10:
            raise Invalid("at most 10 paymentOptionMetadata")
        transfers = option.get("transfer")
        if not isinstance(transfers, list) or not 1 <= len(transfers) <= 5:
            raise Invalid("a payment option has 1 to 5 transfers")
        ids = []
        total = 0
        for transfer in transfers:
            if not isinstance(transfer, dict):
                raise Invalid("transfer items must be objects")
            if transfer.get("idTransfer") not in ("1", "2", "3", "4", "5"):
                raise Invalid("idTransfer must be one of 1-5")
            ids.append(transfer["idTransfer"])
            t_amount = transfer.get("amount")
            if not isinstance(t_amount, int) or isinstance(t_amount, bool) or t_amount < 1:
                raise Invalid("transfer amount must be an integer >= 1")
            total += t_amount
            _str(transfer, "remittanceInformation", max_len=140)
            _str(transfer, "category")
            has_iban = "iban" in transfer or "postalIban" in transfer
            stamp = transfer.get("stamp")
            if has_iban == (stamp is not None):
                raise Invalid("a transfer has an iban or a stamp, exactly one")
            for name in ("iban", "postalIban"):
                if name in transfer and not (isinstance(transfer[name], str) and _IBAN.match(transfer[name])):
                    raise Invalid(f"{name} is not well formed")
            if stamp is not None:
                if not isinstance(stamp, dict):
                    raise Invalid("stamp must be an object")
                _str(stamp, "hashDocument", max_len=72)
                _str(stamp, "stampType", max_len=2)
                if len(stamp["stampType"]) != 2:
                    raise Invalid("stampType must be 2 characters")
                if not (isinstance(stamp.get("provincialResidence"), str)
                        and _PROVINCE.match(stamp["provincialResidence"])):
                    raise Invalid("provincialResidence must be 2 capital letters")
        if len(set(ids)) != len(ids):
            raise Invalid("idTransfer values must be unique")
        if total != amount:
            raise Invalid("the sum of the transfer amounts must equal the option amount")


class GpdTwin:
    """The WSGI application (thread-safe: werkzeug serves threaded)."""

    def __init__(self, *, keys: list[str] | None = None, limit: int = LIMIT, window_seconds: float = WINDOW_SECONDS,
                 clock: Any = time.monotonic) -> None:
        self.keys = set(keys) if keys else None
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self.lock = threading.RLock()
        self.url_map = Map([
            Rule(f"{V1}/info", endpoint="info", methods=["GET"]),
            Rule(f"{V1}/organizations/<org>/debtpositions", endpoint="list", methods=["GET"]),
            Rule(f"{V1}/organizations/<org>/debtpositions", endpoint="create", methods=["POST"]),
            Rule(f"{V1}/organizations/<org>/debtpositions/<iupd>", endpoint="get", methods=["GET"]),
            Rule(f"{V1}/organizations/<org>/debtpositions/<iupd>", endpoint="delete", methods=["DELETE"]),
            Rule(f"{V1}/organizations/<org>/debtpositions/<iupd>/publish", endpoint="publish", methods=["POST"]),
            Rule(f"{V1}/organizations/<org>/debtpositions/<iupd>/invalidate", endpoint="invalidate",
                 methods=["POST"]),
            Rule(f"{V2}/organizations/<org>/debtpositions", endpoint="create_many", methods=["POST"]),
            Rule(f"{V2}/organizations/<org>/debtpositions", endpoint="delete_many", methods=["DELETE"]),
            Rule(f"{RECEIPTS}/payments/<org>/receipts", endpoint="receipts", methods=["GET"]),
            Rule(f"{RECEIPTS}/payments/<org>/receipts/<iuv>", endpoint="receipt", methods=["GET"]),
            Rule("/__twin/faults", endpoint="twin_faults", methods=["POST"]),
            Rule("/__twin/requests", endpoint="twin_requests", methods=["GET"]),
            Rule("/__twin/reset", endpoint="twin_reset", methods=["POST"]),
            Rule("/__twin/pay/<org>/<nav>", endpoint="twin_pay", methods=["POST"]),
            Rule("/__twin/positions/<org>", endpoint="twin_positions", methods=["GET"]),
        ])
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.positions: dict[str, dict[str, dict[str, Any]]] = {}
            self.receipts: dict[str, dict[str, dict[str, Any]]] = {}  # org -> iuv -> {xml, summary}
            self.iuv_owner: dict[str, dict[str, str]] = {}  # org -> iuv -> iupd (a city-size campaign checks each)
            self.received: Counter[str] = Counter()
            self.statuses: Counter[str] = Counter()
            self.faults: dict[str, Any] = {}
            self.calls: dict[str, deque[float]] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except Exception:  # noqa: BLE001 - werkzeug's NotFound / MethodNotAllowed
            return _problem(404, "Not Found", "no such path")
        if endpoint.startswith("twin_"):
            control: Response = getattr(self, endpoint)(request, **args)
            return control
        with self.lock:
            self.received[f"{request.method} {endpoint}"] += 1
        response = self._gpd(request, endpoint, dict(args))
        with self.lock:
            self.statuses[str(response.status_code)] += 1
        return response

    def _gpd(self, request: Request, endpoint: str, args: dict[str, str]) -> Response:
        key = request.headers.get("Ocp-Apim-Subscription-Key", "")
        if not key or (self.keys is not None and key not in self.keys):
            return Response(json.dumps({"statusCode": 401, "message": "Access denied due to missing or invalid "
                                        "subscription key."}), status=401, mimetype="application/json")
        limited = self._rate_limited(key)
        if limited is not None:
            return limited
        fault = self._take_fault()
        if fault is not None:
            return fault
        answer: Response = getattr(self, f"op_{endpoint}")(request, **args)
        return answer

    def _rate_limited(self, key: str) -> Response | None:
        now = self.clock()
        with self.lock:
            calls = self.calls.setdefault(key, deque())
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                retry = max(1, int(calls[0] + self.window - now + 0.999))
                response = _problem(429, "Too Many Requests", "rate limit is exceeded")
                response.headers["Retry-After"] = str(retry)
                return response
            calls.append(now)
        return None

    def _take_fault(self) -> Response | None:
        with self.lock:
            fault = dict(self.faults)
            if not fault or fault.get("count", 0) <= 0:
                return None
            self.faults["count"] -= 1
        if fault.get("latency_ms"):
            time.sleep(fault["latency_ms"] / 1000)
        if fault.get("malformed"):
            return Response(b'{"iupd": ', status=200, mimetype="application/json")
        status = fault.get("status")
        if status:
            response = _problem(int(status), "Injected fault", "sandbox fault")
            if int(status) == 429:
                response.headers["Retry-After"] = str(fault.get("retry_after", 1))
            return response
        return None

    @staticmethod
    def _body(request: Request) -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError:
            raise Invalid("body is not JSON") from None

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _store(self, org: str, body: dict[str, Any], publish: bool) -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(json.dumps(body))
        stored["status"] = "VALID" if publish else "DRAFT"
        stored["organizationFiscalCode"] = org
        stored["insertedDate"] = stored["lastUpdatedDate"] = self._now()
        if publish:
            stored["publishDate"] = self._now()
        for option in stored["paymentOption"]:
            option["nav"] = "3" + option["iuv"]
            option["status"] = "PO_UNPAID"
            option["organizationFiscalCode"] = org
        self.positions.setdefault(org, {})[stored["iupd"]] = stored
        taken = self.iuv_owner.setdefault(org, {})
        for option in stored["paymentOption"]:
            taken[option["iuv"]] = stored["iupd"]
        return stored

    def _forget(self, org: str, iupd: str) -> None:
        stored = self.positions[org].pop(iupd)
        taken = self.iuv_owner.get(org, {})
        for option in stored["paymentOption"]:
            if taken.get(option["iuv"]) == iupd:
                del taken[option["iuv"]]

    def _iuv_taken(self, org: str, body: dict[str, Any]) -> bool:
        """Whether any IUV of `body` belongs to a stored position: one dict look-up per option."""
        taken = self.iuv_owner.get(org, {})
        return any(o["iuv"] in taken for o in body["paymentOption"])

    @staticmethod
    def _model(stored: dict[str, Any]) -> dict[str, Any]:
        """PaymentPositionModel as GPD answers create/publish/invalidate."""
        keep = {"iupd", "type", "payStandIn", "fiscalCode", "fullName", "streetName", "civicNumber", "postalCode",
                "city", "province", "region", "country", "email", "phone", "switchToExpired", "companyName",
                "officeName", "validityDate", "paymentDate", "status"}
        out = {k: v for k, v in stored.items() if k in keep}
        out["paymentOption"] = [
            {k: v for k, v in o.items() if k in {"nav", "iuv", "amount", "description", "isPartialPayment",
                                                  "dueDate", "retentionDate", "transfer", "paymentOptionMetadata"}}
            for o in stored["paymentOption"]
        ]
        return out

    @staticmethod
    def _base_response(stored: dict[str, Any]) -> dict[str, Any]:
        """PaymentPositionModelBaseResponse (GET)."""
        keep = {"iupd", "organizationFiscalCode", "type", "companyName", "officeName", "insertedDate", "publishDate",
                "validityDate", "paymentDate", "status", "lastUpdatedDate"}
        out = {k: v for k, v in stored.items() if k in keep}
        out["paymentOption"] = [
            {**{k: v for k, v in o.items() if k in {"nav", "iuv", "organizationFiscalCode", "amount", "description",
                                                     "isPartialPayment", "dueDate", "retentionDate", "status"}},
             "transfer": [{k: v for k, v in t.items() if k in {"organizationFiscalCode", "idTransfer", "amount",
                                                              "remittanceInformation", "category", "iban",
                                                              "postalIban", "stamp"}}
                          for t in o["transfer"]]}
            for o in stored["paymentOption"]
        ]
        return out

    # -- GPD operations -----------------------------------------------------------------------
    def op_info(self, request: Request) -> Response:
        return self._json({"name": "pagopa-gpd-twin", "version": "1.1.37", "environment": "sandbox"})

    def op_create(self, request: Request, org: str) -> Response:
        publish = request.args.get("toPublish", "false") == "true"
        try:
            body = self._body(request)
            validate_position(body, datetime.now(UTC))
        except Invalid as exc:
            return _problem(400, "BAD REQUEST", str(exc))
        with self.lock:
            if body["iupd"] in self.positions.get(org, {}) or self._iuv_taken(org, body):
                return _problem(409, "Conflict", "debt position already exists")
            stored = self._store(org, body, publish)
            return self._json(self._model(stored), 201)

    def op_create_many(self, request: Request, org: str) -> Response:
        publish = request.args.get("toPublish", "false") == "true"
        try:
            body = self._body(request)
            if not isinstance(body, dict) or not isinstance(body.get("paymentPositions"), list):
                raise Invalid("paymentPositions is required")
            now = datetime.now(UTC)
            for item in body["paymentPositions"]:
                validate_position(item, now)
        except Invalid as exc:
            return _problem(400, "BAD REQUEST", str(exc))
        with self.lock:
            iupds = [p["iupd"] for p in body["paymentPositions"]]
            if len(set(iupds)) != len(iupds) or any(
                    p["iupd"] in self.positions.get(org, {}) or self._iuv_taken(org, p)
                    for p in body["paymentPositions"]):
                return _problem(409, "Conflict", "a debt position already exists")  # all or nothing, as GPD
            for item in body["paymentPositions"]:
                self._store(org, item, publish)
        return Response(status=201)

    def _find(self, org: str, iupd: str) -> dict[str, Any] | None:
        return self.positions.get(org, {}).get(iupd)

    def op_get(self, request: Request, org: str, iupd: str) -> Response:
        with self.lock:
            stored = self._find(org, iupd)
            if stored is None:
                return _problem(404, "Not Found", "no such debt position")
            return self._json(self._base_response(stored))

    def op_list(self, request: Request, org: str) -> Response:
        limit = min(int(request.args.get("limit", 10)), 50)
        page = int(request.args.get("page", 0))
        with self.lock:
            items = list(self.positions.get(org, {}).values())
        chunk = items[page * limit:(page + 1) * limit]
        return self._json({"payment_position_list": [self._base_response(p) for p in chunk],
                           "page_info": {"page": page, "limit": limit, "items_found": len(chunk),
                                         "total_pages": max(1, -(-len(items) // limit))}})

    def op_publish(self, request: Request, org: str, iupd: str) -> Response:
        with self.lock:
            stored = self._find(org, iupd)
            if stored is None:
                return _problem(404, "Not Found", "no such debt position")
            if stored["status"] != "DRAFT":
                return _problem(409, "Conflict", "debt position is not in a publishable state")
            stored["status"] = "VALID"
            stored["publishDate"] = stored["lastUpdatedDate"] = self._now()
            return self._json(self._model(stored))

    def op_invalidate(self, request: Request, org: str, iupd: str) -> Response:
        with self.lock:
            stored = self._find(org, iupd)
            if stored is None:
                return _problem(404, "Not Found", "no such debt position")
            if stored["status"] not in ("PUBLISHED", "VALID"):
                return _problem(409, "Conflict", "debt position cannot be invalidated")
            stored["status"] = "INVALID"
            stored["lastUpdatedDate"] = self._now()
            return self._json(self._model(stored))

    def op_delete(self, request: Request, org: str, iupd: str) -> Response:
        with self.lock:
            stored = self._find(org, iupd)
            if stored is None:
                return _problem(404, "Not Found", "no such debt position")
            if stored["status"] in ("PAID", "PARTIALLY_PAID", "REPORTED"):
                return _problem(409, "Conflict", "a related payment exists")
            self._forget(org, iupd)
        return self._json("OK")

    def op_delete_many(self, request: Request, org: str) -> Response:
        try:
            body = self._body(request)
            iupds = body["paymentPositionIUPDs"] if isinstance(body, dict) else None
            if not isinstance(iupds, list):
                raise Invalid("paymentPositionIUPDs is required")
        except Invalid as exc:
            return _problem(400, "BAD REQUEST", str(exc))
        with self.lock:
            if any(self._find(org, i) is None for i in iupds):
                return _problem(404, "Not Found", "a debt position does not exist")
            for iupd in iupds:
                self._forget(org, iupd)
        return self._json("OK")

    # -- twin controls ---------------------------------------------------------------------------
    def twin_faults(self, request: Request) -> Response:
        body = self._body(request)
        with self.lock:
            self.faults = dict(body) if isinstance(body, dict) else {}
            self.faults.setdefault("count", 1)
        return self._json({"faults": self.faults})

    def twin_requests(self, request: Request) -> Response:
        with self.lock:
            return self._json({"received": dict(self.received), "statuses": dict(self.statuses),
                               "total": sum(self.received.values())})

    def twin_reset(self, request: Request) -> Response:
        self.reset()
        return self._json({"reset": True})

    def twin_positions(self, request: Request, org: str) -> Response:
        with self.lock:
            return self._json({"positions": [self._base_response(p) for p in self.positions.get(org, {}).values()]})

    def twin_pay(self, request: Request, org: str, nav: str) -> Response:
        """A citizen paid: the position becomes PAID and its receipt is listed by the receipts API —
        the one the Nodo twin sent (`{"receipt_xml": ...}`, same receipt id on both paths) or one made here."""
        body = self._body(request) if request.get_data() else None
        given = body.get("receipt_xml") if isinstance(body, dict) else None
        with self.lock:
            iupd = self.iuv_owner.get(org, {}).get(nav[1:])  # nav = aux digit 3 + IUV
            for stored in [self.positions[org][iupd]] if iupd is not None else []:
                for option in stored["paymentOption"]:
                    if option["nav"] == nav:
                        if stored["status"] not in ("VALID", "PUBLISHED"):
                            return _problem(409, "Conflict", f"position is {stored['status']}")
                        stored["status"] = "PAID"
                        option["status"] = "PO_PAID"
                        stored["paymentDate"] = option["paymentDate"] = self._now()
                        xml = given or _receipt_for(org, stored, option)
                        self.receipts.setdefault(org, {})[option["iuv"]] = {
                            "xml": xml, "summary": {
                                "organizationFiscalCode": org, "iuv": option["iuv"], "debtor": stored["fiscalCode"],
                                "paymentAmount": option["amount"], "paymentDateTime": option["paymentDate"],
                                "pspCompanyName": "PSP Sandbox"}}
                        return self._json(self._base_response(stored))
        return _problem(404, "Not Found", "no payment option with this notice number")

    # -- GPD receipts API (gpd_payments.json) -------------------------------------------------------
    def op_receipts(self, request: Request, org: str) -> Response:
        try:
            page, size = int(request.args.get("pageNum", 0)), int(request.args.get("pageSize", 20))
        except ValueError:
            return _problem(400, "BAD REQUEST", "pageNum and pageSize are integers")
        if page < 0 or not 1 <= size <= 100:
            return _problem(400, "BAD REQUEST", "pageNum >= 0, pageSize 1-100")
        since, until = request.args.get("from"), request.args.get("to")
        with self.lock:
            items = [r["summary"] for r in self.receipts.get(org, {}).values()
                     if (not since or r["summary"]["paymentDateTime"][:10] >= since[:10])
                     and (not until or r["summary"]["paymentDateTime"][:10] <= until[:10])]
        if not items:
            return _problem(404, "Not Found", "no receipts found")
        chunk = items[page * size:(page + 1) * size]
        return self._json({"currentPageNumber": page, "length": len(chunk),
                           "totalPages": max(1, -(-len(items) // size)), "results": chunk})

    def op_receipt(self, request: Request, org: str, iuv: str) -> Response:
        with self.lock:
            found = self.receipts.get(org, {}).get(iuv)
        if found is None:
            return _problem(404, "Not Found", "no receipt for this IUV")
        return Response(found["xml"], status=200, mimetype="application/xml")


def _receipt_for(org: str, stored: dict[str, Any], option: dict[str, Any]) -> str:
    """A paSendRTV2 receipt for a position paid at the twin (no Nodo involved)."""
    import uuid
    from decimal import Decimal

    from sandbox.nodo.app import receipt_document, receipt_xml

    def euros(cents: int) -> Decimal:
        return (Decimal(cents) / 100).quantize(Decimal("0.01"))

    transfers = []
    for t in option["transfer"]:
        item: dict[str, Any] = {"idTransfer": int(t["idTransfer"]), "transferAmount": euros(t["amount"]),
                                "fiscalCodePA": org, "remittanceInformation": t["remittanceInformation"],
                                "transferCategory": t["category"]}
        if t.get("iban"):
            item["IBAN"] = t["iban"]
        transfers.append(item)
    payment = {
        "creditorReferenceId": option["iuv"], "paymentAmount": euros(option["amount"]),
        "description": option["description"], "companyName": stored["companyName"],
        "debtor": {"uniqueIdentifier": {"entityUniqueIdentifierType": stored["type"],
                                        "entityUniqueIdentifierValue": stored["fiscalCode"]},
                   "fullName": stored["fullName"][:70]},
        "transferList": {"transfer": transfers},
    }
    document = receipt_document(addressing={"idPA": org, "idBrokerPA": org, "idStation": f"{org}_01"},
                                notice_number=option["nav"], fiscal_code=org, payment=payment,
                                receipt_id=uuid.uuid4().hex)
    return receipt_xml(document)
