"""The SPID IdP twin as a WSGI app: metadata, SSO (Redirect and POST), a citizen picker, SLO.

Why: an end-to-end login on one machine. The twin verifies the SP's signed AuthnRequest against
the SP metadata it has registered (fetched from the SP, as AgID's registry would hold it), lets
you pick a synthetic citizen (or cancel, or force a SPID anomaly nrNN), and posts a signed
Response to the SP's ACS. Single logout both ways: `/slo` answers an SP's LogoutRequest with a
signed LogoutResponse, and `POST /_logout {"sp", "fiscal_code", "binding"}` starts an
IdP-initiated logout (the SP's LogoutResponse comes back to `/slo`).
Faults for the SSO step: `POST /_faults {"latency": s, "status": 429|5xx, "retry_after": s,
"malformed": true}` (malformed: the Response posted to the ACS is truncated XML).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.spid_idp import idp as saml_idp
from services.spid.domain import saml
from services.spid.domain.authn import encode
from services.spid.domain.logout import IncomingMessage, read_message
from services.spid.domain.xmlsig import verify, verify_query

FAULT_KEYS = {"latency", "status", "retry_after", "malformed"}


class SpidIdpTwin:
    def __init__(self, idp: saml_idp.Idp, sp_metadata: Callable[[], Iterable[bytes]]) -> None:
        self.idp = idp
        self.sp_metadata = sp_metadata
        self.pending: dict[str, tuple[saml_idp.ReadRequest, str]] = {}  # ticket -> (request, ACS URL)
        self.sessions: dict[tuple[str, str], tuple[str, str]] = {}  # (SP, fiscal code) -> (NameID, SessionIndex)
        self.pending_logouts: dict[str, str] = {}  # our LogoutRequest id -> SP entity id
        self.faults: dict[str, Any] = {}

    def _registered(self, entity_id: str) -> saml_idp.RegisteredSp:
        for document in self.sp_metadata():
            sp = saml_idp.registered_sp(document)
            if sp.entity_id == entity_id:
                return sp
        raise ValueError("unknown service provider")

    def _sp(self, entity_id: str) -> tuple[dict[str, str], list[str]]:
        sp = self._registered(entity_id)
        return sp.acs, sp.certs

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.route(request)
        except Exception as exc:  # noqa: BLE001 - a twin answers every bad input with a 400 and a reason
            response = Response(json.dumps({"error": getattr(exc, "detail", None) or str(exc) or type(exc).__name__}),
                                status=400, mimetype="application/json")
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/metadata":
            return Response(saml_idp.idp_metadata(self.idp), mimetype="application/samlmetadata+xml")
        if path == "/_faults" and request.method == "POST":
            return self.set_faults(json.loads(request.get_data(as_text=True) or "{}"))
        if path == "/sso":
            if self.faults.get("latency"):
                time.sleep(float(self.faults["latency"]))
            if self.faults.get("status"):
                status = int(self.faults["status"])
                headers = {"Retry-After": str(int(self.faults.get("retry_after", 1)))} if status == 429 else {}
                return Response("fault injected", status=status, headers=headers)
            return self.sso(request)
        if path == "/login" and request.method == "POST":
            return self.login(request)
        if path == "/slo":
            return self.slo(request)
        if path == "/_logout" and request.method == "POST":
            return self.start_logout(json.loads(request.get_data(as_text=True) or "{}"))
        return Response("not found", status=404)

    def set_faults(self, faults: dict[str, Any]) -> Response:
        unknown = set(faults) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        if faults.get("status") is not None and int(faults["status"]) not in (429, 500, 502, 503, 504):
            raise ValueError("status must be 429 or 5xx")
        self.faults = faults
        return Response(json.dumps(self.faults), mimetype="application/json")

    def sso(self, request: Request) -> Response:
        if request.method == "POST":
            saml_request = request.form["SAMLRequest"]
            read = self._read_post(saml_request, request.form.get("RelayState", ""))
        else:
            read = self._read_redirect(request.query_string.decode())
        acs_map, _ = self._sp(read.issuer)
        acs = read.acs_url or acs_map.get(read.acs_index or "0", "")
        ticket = secrets.token_urlsafe(16)
        self.pending[ticket] = (read, acs)
        options = "".join(f'<option value="{cf}">{v["name"]} {v["familyName"]} ({cf})</option>'
                          for cf, v in saml_idp.CITIZENS.items())
        page = (f'<!DOCTYPE html><html><body><h1>SPID twin - livello {read.level}</h1>'
                f'<form method="post" action="/login"><input type="hidden" name="ticket" value="{ticket}"/>'
                f'<select name="fiscal_code">{options}</select>'
                '<button name="action" value="login">Entra</button>'
                '<button name="action" value="cancel">Annulla</button></form></body></html>')
        return Response(page, mimetype="text/html", headers={"X-Spid-Ticket": ticket})

    def _read_post(self, saml_request: str, relay_state: str) -> saml_idp.ReadRequest:
        import base64

        from services.spid.domain.xmlsig import parse
        issuer = (parse(base64.b64decode(saml_request)).findtext(
            "{urn:oasis:names:tc:SAML:2.0:assertion}Issuer") or "").strip()
        _, certs = self._sp(issuer)
        return saml_idp.read_post(saml_request, relay_state, certs)

    def _read_redirect(self, query: str) -> saml_idp.ReadRequest:
        import base64
        import zlib
        from urllib.parse import parse_qs

        from services.spid.domain.xmlsig import parse
        xml = zlib.decompress(base64.b64decode(parse_qs(query)["SAMLRequest"][0]), -15)
        issuer = (parse(xml).findtext("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer") or "").strip()
        _, certs = self._sp(issuer)
        return saml_idp.read_redirect(query, certs)

    def login(self, request: Request) -> Response:
        read, acs = self.pending.pop(request.form["ticket"])
        now = dt.datetime.now(dt.UTC)
        action = request.form.get("action", "login")
        error = int(request.form["error"]) if request.form.get("error") else (25 if action == "cancel" else None)
        level = int(request.form["level"]) if request.form.get("level") else None
        fiscal_code = request.form.get("fiscal_code")
        body = saml_idp.response(self.idp, read, acs_url=acs, fiscal_code=fiscal_code, now=now, level=level,
                                 error_code=error)
        if error is None and fiscal_code:
            issued = saml_idp.issued_session(body)
            if issued:
                self.sessions[(read.issuer, fiscal_code)] = issued
        if self.faults.get("malformed"):
            body = base64.b64encode(base64.b64decode(body)[:200]).decode()
        form = saml_idp.post_form(html.escape(acs), {"SAMLResponse": body, "RelayState": html.escape(read.relay_state)})
        return Response(form, mimetype="text/html")

    # -- single logout ------------------------------------------------------------------------------
    def _verified(self, message: IncomingMessage) -> saml_idp.RegisteredSp:
        issuer = (message.root.findtext("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer") or "").strip()
        sp = self._registered(issuer)
        if message.binding == "post":
            verify(message.root, sp.certs, "SP logout message")
        elif not verify_query(message.signed_query or "", message.signature or "", sp.certs):
            raise ValueError("logout message signature not valid")
        return sp

    def _send(self, element: Any, binding: str, relay_state: str, param: str) -> Response:
        message = encode(element, key_pem=self.idp.key_pem, cert_pem=self.idp.cert_pem,
                         binding=binding, relay_state=relay_state, param=param)  # type: ignore[arg-type]
        if message.binding == "redirect":
            return Response("", status=302, headers={"Location": message.url})
        return Response(message.html_form(), mimetype="text/html")

    def slo(self, request: Request) -> Response:
        binding = "post" if request.method == "POST" else "redirect"
        message = read_message(binding, form=request.form if binding == "post" else None,  # type: ignore[arg-type]
                               query=request.query_string.decode() if binding == "redirect" else None)
        sp = self._verified(message)
        if message.param == "SAMLResponse":  # the SP answers our IdP-initiated logout
            if self.pending_logouts.pop(message.root.get("InResponseTo", ""), None) != sp.entity_id:
                raise ValueError("LogoutResponse answers no logout request of this IdP")
            status = message.root.find("{urn:oasis:names:tc:SAML:2.0:protocol}Status/"
                                       "{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode")
            return Response(json.dumps({"status": "logged_out", "sp": sp.entity_id,
                                        "status_code": status.get("Value") if status is not None else None}),
                            mimetype="application/json")
        name_id = message.root.findtext("{urn:oasis:names:tc:SAML:2.0:assertion}NameID") or ""
        for key, (issued_name, _) in list(self.sessions.items()):
            if key[0] == sp.entity_id and issued_name == name_id:
                del self.sessions[key]
        destination = sp.slo.get(saml.BINDING_REDIRECT if binding == "redirect" else saml.BINDING_POST, "")
        reply = saml_idp.logout_response(self.idp, destination=destination,
                                         in_response_to=message.root.get("ID", ""), now=dt.datetime.now(dt.UTC))
        return self._send(reply, binding, message.relay_state or "", "SAMLResponse")

    def start_logout(self, order: dict[str, Any]) -> Response:
        """IdP-initiated single logout of a citizen's session at one SP (a twin control endpoint)."""
        sp = self._registered(str(order.get("sp", "")))
        binding = str(order.get("binding", "post"))
        issued = self.sessions.pop((sp.entity_id, str(order.get("fiscal_code", ""))), None)
        if issued is None:
            return Response(json.dumps({"error": "no session of this citizen at this SP"}), status=404,
                            mimetype="application/json")
        destination = sp.slo.get(saml.BINDING_REDIRECT if binding == "redirect" else saml.BINDING_POST, "")
        element = saml_idp.logout_request(self.idp, destination=destination, name_id=issued[0],
                                          session_index=issued[1], now=dt.datetime.now(dt.UTC))
        self.pending_logouts[element.get("ID", "")] = sp.entity_id
        return self._send(element, binding, secrets.token_urlsafe(12), "SAMLRequest")
