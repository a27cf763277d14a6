"""The SPID IdP twin as a WSGI app: metadata, SSO (Redirect and POST), a citizen picker, SLO.

Why: an end-to-end login on one machine. The twin verifies the SP's signed AuthnRequest against
the SP metadata it has registered (fetched from the SP, as AgID's registry would hold it), lets
you pick a synthetic citizen (or cancel, or force a SPID anomaly nrNN), and posts a signed
Response to the SP's ACS. Faults: `POST /_faults {"latency": s, "status": 5xx}` for the SSO step.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.spid_idp import idp as saml_idp


class SpidIdpTwin:
    def __init__(self, idp: saml_idp.Idp, sp_metadata: Callable[[], Iterable[bytes]]) -> None:
        self.idp = idp
        self.sp_metadata = sp_metadata
        self.pending: dict[str, tuple[saml_idp.ReadRequest, str]] = {}  # ticket -> (request, ACS URL)
        self.faults: dict[str, Any] = {}

    def _sp(self, entity_id: str) -> tuple[dict[str, str], list[str]]:
        for document in self.sp_metadata():
            sp_entity, acs, certs = saml_idp.sp_certificates(document)
            if sp_entity == entity_id:
                return acs, certs
        raise ValueError("unknown service provider")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.route(request)
        except (ValueError, KeyError) as exc:
            response = Response(json.dumps({"error": str(exc) or type(exc).__name__}), status=400,
                                mimetype="application/json")
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/metadata":
            return Response(saml_idp.idp_metadata(self.idp), mimetype="application/samlmetadata+xml")
        if path == "/_faults" and request.method == "POST":
            self.faults = json.loads(request.get_data(as_text=True) or "{}")
            return Response(json.dumps(self.faults), mimetype="application/json")
        if path == "/sso":
            if self.faults.get("latency"):
                time.sleep(float(self.faults["latency"]))
            if self.faults.get("status"):
                return Response("fault injected", status=int(self.faults["status"]))
            return self.sso(request)
        if path == "/login" and request.method == "POST":
            return self.login(request)
        if path == "/slo":
            return Response("<html><body>Logout completed</body></html>", mimetype="text/html")
        return Response("not found", status=404)

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
        body = saml_idp.response(self.idp, read, acs_url=acs, fiscal_code=request.form.get("fiscal_code"),
                                 now=now, level=level, error_code=error)
        form = saml_idp.post_form(html.escape(acs), {"SAMLResponse": body, "RelayState": html.escape(read.relay_state)})
        return Response(form, mimetype="text/html")
