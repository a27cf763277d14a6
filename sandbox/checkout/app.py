"""The Checkout twin: `POST /checkout/ec/v2/carts` as pagoPA Checkout answers it (checkout_v2.json).

Why: a citizen pays online by being redirected to Checkout with a cart of 1-5 notices. The twin
checks the cart as the contract says (required fields, 18-digit notice numbers, 11-digit fiscal
codes, amounts in cents >= 1, texts <= 140, the four return URLs of v2), answers **302** with the
Checkout page in `Location` (400/500 ProblemJson otherwise), and serves that page so a browser
lands somewhere. Carts are remembered for tests.

The page lets the citizen pay: "Paga" has the Nodo twin (`nodo_url`) play the PSP for every notice
of the cart — `paVerifyPaymentNotice`, `paGetPaymentV2`, `paSendRTV2` to the Comune's station, as a
real payment reaches it — then returns to `returnOkUrl` (`returnErrorUrl` if a step failed);
"Annulla" returns to `returnCancelUrl`. Without a Nodo twin the page only links back.

Controls (not part of Checkout): `POST /__twin/faults` `{"status": 500|400, "count": n,
"latency_ms": ms, "malformed": bool}`; `GET /__twin/carts`; `POST /__twin/reset`.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import uuid
from typing import Any

import httpx
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

V2 = "/checkout/ec/v2"
V1 = "/checkout/ec/v1"
_NOTICE = re.compile(r"^[0-9]{18}$")
_ORG = re.compile(r"^[0-9]{11}$")
_URL = re.compile(r"^https?://\S+$")


class Invalid(Exception):
    pass


def _problem(status: int, title: str, detail: str) -> Response:
    return Response(json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}),
                    status=status, mimetype="application/json")


def validate_cart(body: Any, *, version: int) -> None:
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    notices = body.get("paymentNotices")
    if not isinstance(notices, list) or not 1 <= len(notices) <= 5:
        raise Invalid("paymentNotices: 1 to 5 items")
    for n in notices:
        if not isinstance(n, dict):
            raise Invalid("paymentNotices items are objects")
        if not isinstance(n.get("noticeNumber"), str) or not _NOTICE.match(n["noticeNumber"]):
            raise Invalid("noticeNumber: 18 characters")
        if not isinstance(n.get("fiscalCode"), str) or not _ORG.match(n["fiscalCode"]):
            raise Invalid("fiscalCode: 11 characters")
        amount = n.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            raise Invalid("amount: integer euro cents >= 1")
        for name in ("companyName", "description"):
            if not isinstance(n.get(name), str) or len(n[name]) > 140:
                raise Invalid(f"{name}: string of at most 140 characters")
    urls = body.get("returnUrls")
    required = ["returnOkUrl", "returnCancelUrl", "returnErrorUrl"] + (["returnWaitingUrl"] if version == 2 else [])
    if not isinstance(urls, dict) or any(not isinstance(urls.get(k), str) or not _URL.match(urls[k])
                                         for k in required):
        raise Invalid(f"returnUrls: {', '.join(required)} are required URIs")
    if "emailNotice" in body and not (isinstance(body["emailNotice"], str) and "@" in body["emailNotice"]):
        raise Invalid("emailNotice: an e-mail address")
    if "allCCP" in body and not isinstance(body["allCCP"], bool):
        raise Invalid("allCCP: boolean")
    if "idCart" in body and not isinstance(body["idCart"], str):
        raise Invalid("idCart: string")


class CheckoutTwin:
    def __init__(self, *, public_url: str, keys: list[str] | None = None, nodo_url: str | None = None) -> None:
        self.public_url = public_url.rstrip("/")
        self.nodo_url = nodo_url.rstrip("/") if nodo_url else None
        self.keys = set(keys) if keys else None
        self.lock = threading.Lock()
        self.url_map = Map([
            Rule(f"{V2}/carts", endpoint="carts_v2", methods=["POST"]),
            Rule(f"{V1}/carts", endpoint="carts_v1", methods=["POST"]),
            Rule("/c/<cart_id>", endpoint="page", methods=["GET"]),
            Rule("/c/<cart_id>/pay", endpoint="pay", methods=["POST"]),
            Rule("/__twin/faults", endpoint="faults", methods=["POST"]),
            Rule("/__twin/carts", endpoint="carts_list", methods=["GET"]),
            Rule("/__twin/reset", endpoint="reset", methods=["POST"]),
        ])
        self.carts: dict[str, dict[str, Any]] = {}
        self.fault: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
        except Exception:  # noqa: BLE001 - werkzeug's NotFound / MethodNotAllowed
            return _problem(404, "Not Found", "no such path")(environ, start_response)
        response: Response = getattr(self, f"on_{endpoint}")(request, **args)
        return response(environ, start_response)

    def _take_fault(self) -> Response | None:
        with self.lock:
            fault = dict(self.fault)
            if fault.get("count", 0) <= 0:
                return None
            self.fault["count"] -= 1
        if fault.get("latency_ms"):
            time.sleep(fault["latency_ms"] / 1000)
        if fault.get("malformed"):
            return Response(b"{", status=302, mimetype="application/json")  # a redirect without Location
        if fault.get("status"):
            return _problem(int(fault["status"]), "Injected fault", "sandbox fault")
        return None

    def _carts(self, request: Request, version: int) -> Response:
        key = request.headers.get("Ocp-Apim-Subscription-Key") or request.args.get("subscription-key")
        if self.keys is not None and key not in self.keys:
            return Response(json.dumps({"statusCode": 401, "message": "Access denied due to invalid subscription "
                                        "key."}), status=401, mimetype="application/json")
        fault = self._take_fault()
        if fault is not None:
            return fault
        try:
            body = json.loads(request.get_data() or b"null")
            validate_cart(body, version=version)
        except ValueError:
            return _problem(400, "Bad Request", "body is not JSON")
        except Invalid as exc:
            return _problem(400, "Bad Request", str(exc))
        cart_id = str(uuid.uuid4())
        with self.lock:
            self.carts[cart_id] = body
        return Response(status=302, headers={"Location": f"{self.public_url}/c/{cart_id}"})

    def on_carts_v2(self, request: Request) -> Response:
        return self._carts(request, 2)

    def on_carts_v1(self, request: Request) -> Response:
        return self._carts(request, 1)

    def on_page(self, request: Request, cart_id: str) -> Response:
        with self.lock:
            cart = self.carts.get(cart_id)
        if cart is None:
            return Response("<h1>Carrello non trovato</h1>", status=404, mimetype="text/html")
        lines = "".join(f"<li>{html.escape(n['description'])}: {n['amount'] / 100:.2f} EUR "
                        f"(avviso {html.escape(n['noticeNumber'])})</li>" for n in cart["paymentNotices"])
        urls = cart["returnUrls"]
        if self.nodo_url is None:
            actions = f'<a href="{html.escape(urls["returnOkUrl"])}">Torna al Comune</a>'
        else:
            actions = (f'<form method="post" action="/c/{html.escape(cart_id)}/pay">'
                       '<button type="submit">Paga (simulato)</button></form>'
                       f'<p><a href="{html.escape(urls["returnCancelUrl"])}">Annulla e torna al Comune</a></p>')
        return Response(f'<!doctype html><html lang="it"><head><meta charset="utf-8"><title>pagoPA Checkout '
                        f'(sandbox)</title></head><body><main><h1>pagoPA Checkout (sandbox)</h1><ul>{lines}</ul>'
                        f"{actions}</main></body></html>", mimetype="text/html")

    def on_pay(self, request: Request, cart_id: str) -> Response:
        """The citizen pays the whole cart: the Nodo twin calls the Comune's station for each notice."""
        with self.lock:
            cart = self.carts.get(cart_id)
        if cart is None or self.nodo_url is None:
            return Response("<h1>Carrello non trovato</h1>", status=404, mimetype="text/html")
        urls = cart["returnUrls"]
        target = urls["returnOkUrl"]
        for notice in cart["paymentNotices"]:
            try:
                paid = httpx.post(f"{self.nodo_url}/__twin/pay", timeout=60, json={
                    "fiscalCode": notice["fiscalCode"], "noticeNumber": notice["noticeNumber"]}).json()
                outcomes = [paid.get(step, {}).get("outcome") for step in ("verify", "get", "send")]
            except (httpx.HTTPError, ValueError):
                outcomes = []
            if outcomes != ["OK", "OK", "OK"]:
                target = urls["returnErrorUrl"]
                break
        with self.lock:
            cart["paid"] = target == urls["returnOkUrl"]
        return Response(status=303, headers={"Location": target})

    def on_faults(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        with self.lock:
            self.fault = dict(body) if isinstance(body, dict) else {}
            self.fault.setdefault("count", 1)
        return Response(json.dumps({"faults": self.fault}), mimetype="application/json")

    def on_carts_list(self, request: Request) -> Response:
        with self.lock:
            return Response(json.dumps({"carts": self.carts}), mimetype="application/json")

    def on_reset(self, request: Request) -> Response:
        with self.lock:
            self.carts.clear()
            self.fault = {}
        return Response(json.dumps({"reset": True}), mimetype="application/json")
