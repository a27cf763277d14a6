"""The CIE OP + trust anchor twin as a WSGI app.

Trust anchor: `/ta/.well-known/openid-federation`, `/ta/fetch?sub=`, `/ta/resolve?sub=&anchor=`,
`/ta/trust_mark?sub=&trust_mark_id=`. Intermediate (when enabled): `/ia/.well-known/openid-federation`,
`/ia/fetch?sub=`. OpenID Provider:
`/op/.well-known/openid-federation`, `/op/authorization` (a citizen picker; header X-Cie-Ticket),
`POST /op/login` (ticket, fiscal_code, action=login|cancel -> 302 to the RP's redirect_uri),
`POST /op/token` (private_key_jwt; authorization_code + PKCE, or refresh_token when the login asked
`offline_access` with prompt consent and accepted SpidL1, as the reference OP; refresh tokens
rotate), `GET /op/userinfo` (signed, then encrypted), `POST /op/revocation` (RFC 7009: revokes
the token and the grant it belongs to), `POST /op/introspection`.
Faults for the token endpoint: `POST /_faults {"latency": s, "status": 429|5xx, "retry_after": s,
"malformed": true, "chain": [...]}` (malformed: userinfo is not a JWE; chain: the federation's
`chain_faults`, see provider.py).
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.cie_op.provider import Federation, OidcError
from sandbox.spid_idp.idp import CITIZENS
from services.spid.domain import saml
from services.spid.domain.federation import STATEMENT_MEDIA_TYPE, WELL_KNOWN

FAULT_KEYS = {"latency", "status", "retry_after", "malformed", "chain"}
CODE_LIFETIME = 60


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


class CieOpTwin:
    def __init__(self, federation: Federation, fetch: Callable[[str], str]) -> None:
        self.federation = federation
        self.fetch = fetch
        self.tickets: dict[str, dict[str, Any]] = {}  # picker ticket -> request claims + RP metadata
        self.codes: dict[str, dict[str, Any]] = {}  # authorization code -> login
        self.access: dict[str, dict[str, Any]] = {}  # access token -> login
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # refresh token -> login (offline_access)
        self.revoked = 0  # grants ended at the revocation endpoint (tests read it)
        self.faults: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.route(request)
        except OidcError as exc:
            status = 401 if exc.error == "invalid_client" else (404 if exc.error == "not_found" else 400)
            response = _json({"error": exc.error, "error_description": exc.description}, status)
        except (ValueError, KeyError) as exc:
            response = _json({"error": "invalid_request", "error_description": str(exc) or type(exc).__name__}, 400)
        return response(environ, start_response)

    def _statement(self, token: str) -> Response:
        return Response(token, mimetype=STATEMENT_MEDIA_TYPE)

    def route(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        fed = self.federation
        if path == "/ta" + WELL_KNOWN:
            return self._statement(fed.anchor_configuration())
        if path == "/ta/fetch":
            return self._statement(fed.subordinate_statement(request.args.get("sub", ""), self.fetch))
        if path == "/ta/resolve":
            return Response(fed.resolve(request.args.get("sub", ""), request.args.get("anchor", ""), self.fetch),
                            mimetype="application/resolve-response+jwt")
        if path == "/ta/trust_mark":
            return Response(fed.trust_mark(request.args.get("trust_mark_id", ""), request.args.get("sub", "")),
                            mimetype="application/trust-mark+jwt")
        if path == "/ia" + WELL_KNOWN:
            return self._statement(fed.intermediate_configuration())
        if path == "/ia/fetch":
            return self._statement(fed.intermediate_statement(request.args.get("sub", "")))
        if path == "/op" + WELL_KNOWN:
            return self._statement(fed.provider_configuration())
        if path == "/_faults" and request.method == "POST":
            return self.set_faults(json.loads(request.get_data(as_text=True) or "{}"))
        if path == "/op/authorization":
            return self.authorization(request)
        if path == "/op/login" and request.method == "POST":
            return self.login(request)
        if path == "/op/token" and request.method == "POST":
            if self.faults.get("latency"):
                time.sleep(float(self.faults["latency"]))
            if self.faults.get("status"):
                status = int(self.faults["status"])
                headers = {"Retry-After": str(int(self.faults.get("retry_after", 1)))} if status == 429 else {}
                return _json({"error": "temporarily_unavailable"}, status, headers)
            return self.token(request)
        if path == "/op/userinfo":
            return self.userinfo(request)
        if path == "/op/revocation" and request.method == "POST":
            return self.revocation(request)
        if path == "/op/introspection" and request.method == "POST":
            return self.introspection(request)
        return Response("not found", status=404)

    def set_faults(self, faults: dict[str, Any]) -> Response:
        unknown = set(faults) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        if faults.get("status") is not None and int(faults["status"]) not in (429, 500, 502, 503, 504):
            raise ValueError("status must be 429 or 5xx")
        from sandbox.cie_op.provider import CHAIN_FAULTS
        chain = set(faults.get("chain") or ())
        if not chain <= CHAIN_FAULTS:
            raise ValueError(f"chain faults are {', '.join(sorted(CHAIN_FAULTS))}")
        self.federation.chain_faults = chain
        self.faults = faults
        return _json(self.faults)

    def authorization(self, request: Request) -> Response:
        query = {k: v for k, v in request.args.items()}
        rp = self.federation.relying_party(query.get("client_id", ""), self.fetch)
        claims = self.federation.read_request(query, rp)
        acr = [v for v in str(claims.get("acr_values", "")).split() if v in saml.LEVEL_OF]
        level = min((saml.LEVEL_OF[v] for v in acr), default=2)
        ticket = secrets.token_urlsafe(16)
        self.tickets[ticket] = {"claims": claims, "rp": rp, "level": level}
        options = "".join(f'<option value="{cf}">{v["name"]} {v["familyName"]} ({cf})</option>'
                          for cf, v in CITIZENS.items())
        page = (f"<!DOCTYPE html><html><body><h1>CIE twin - livello {level}</h1>"
                f'<form method="post" action="/op/login"><input type="hidden" name="ticket" value="{ticket}"/>'
                f'<select name="fiscal_code">{options}</select><button name="action" value="login">Entra</button>'
                '<button name="action" value="cancel">Annulla</button></form></body></html>')
        return Response(page, mimetype="text/html", headers={"X-Cie-Ticket": ticket})

    def login(self, request: Request) -> Response:
        pending = self.tickets.pop(request.form["ticket"])
        claims = pending["claims"]
        redirect = claims["redirect_uri"]
        if request.form.get("action", "login") == "cancel":
            params = {"error": "access_denied", "error_description": "the citizen cancelled",
                      "state": claims["state"], "iss": self.federation.provider}
        else:
            fiscal_code = request.form["fiscal_code"]
            if fiscal_code not in CITIZENS:
                raise ValueError("unknown test citizen")
            code = secrets.token_urlsafe(32)
            self.codes[code] = {"claims": claims, "rp": pending["rp"], "fiscal_code": fiscal_code,
                                "level": int(request.form.get("level") or pending["level"]),
                                "expires": time.time() + CODE_LIFETIME}
            params = {"code": code, "state": claims["state"], "iss": self.federation.provider}
        location = f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(params)}"
        return Response(f'<a href="{html.escape(location)}">continua</a>', status=302,
                        headers={"Location": location})

    def token(self, request: Request) -> Response:
        form = {k: v for k, v in request.form.items()}
        if form.get("grant_type") == "refresh_token":
            return self.refresh(form)
        if form.get("grant_type") != "authorization_code":
            raise OidcError("unsupported_grant_type", "authorization_code or refresh_token")
        login = self.codes.pop(form.get("code", ""), None)
        if login is None or login["expires"] < time.time():
            raise OidcError("invalid_grant", "code unknown, used or expired")
        claims = login["claims"]
        if form.get("client_id") != claims["client_id"] or form.get("redirect_uri") != claims["redirect_uri"]:
            raise OidcError("invalid_grant", "client_id or redirect_uri differ from the authorization request")
        self.federation.check_client_assertion(form, login["rp"])
        self.federation.check_verifier(form.get("code_verifier", ""), claims["code_challenge"])
        return self._tokens(login, nonce=claims["nonce"])

    def _tokens(self, login: dict[str, Any], nonce: str | None) -> Response:
        client_id = login["claims"]["client_id"]
        access = self.federation.bearer_token(client_id, "access", 600)
        self.access[access] = login
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 600,
                                  "id_token": self.federation.id_token(client_id, login["fiscal_code"], nonce,
                                                                       login["level"])}
        scopes = str(login["claims"].get("scope", "")).split()
        acrs = str(login["claims"].get("acr_values", "")).split()
        # as the reference OP: a refresh token only for offline_access, prompt consent and an L1-capable login
        if ("offline_access" in scopes and "consent" in str(login["claims"].get("prompt", ""))
                and saml.LEVELS[1] in acrs):
            refresh = self.federation.bearer_token(client_id, "refresh", 3600)
            self.refresh_tokens[refresh] = login
            answer["refresh_token"] = refresh
        login.setdefault("tokens", set()).update(t for t in (access, answer.get("refresh_token")) if t)
        return _json(answer, headers={"Cache-Control": "no-store"})

    def refresh(self, form: dict[str, str]) -> Response:
        login = self.refresh_tokens.pop(form.get("refresh_token", ""), None)  # single use: rotated
        if login is None or form.get("client_id") != login["claims"]["client_id"]:
            raise OidcError("invalid_grant", "refresh token unknown, used or revoked")
        self.federation.check_client_assertion(form, login["rp"])
        return self._tokens(login, nonce=None)

    def _client(self, form: dict[str, str], endpoint: str) -> dict[str, Any]:
        rp = self.federation.relying_party(form.get("client_id", ""), self.fetch)
        self.federation.check_client_assertion(form, rp, endpoint)
        return rp

    def revocation(self, request: Request) -> Response:
        """RFC 7009: the token's whole grant (access and refresh tokens) ends; unknown tokens are fine."""
        form = {k: v for k, v in request.form.items()}
        self._client(form, "revocation_endpoint")
        token = form.get("token", "")
        login = self.access.get(token) or self.refresh_tokens.get(token)
        if login is not None and login["claims"]["client_id"] == form.get("client_id"):
            for issued in login.get("tokens", ()):
                self.access.pop(issued, None)
                self.refresh_tokens.pop(issued, None)
            self.revoked += 1
        return Response("", status=200)

    def introspection(self, request: Request) -> Response:
        form = {k: v for k, v in request.form.items()}
        self._client(form, "introspection_endpoint")
        token = form.get("token", "")
        login = self.access.get(token) or self.refresh_tokens.get(token)
        if login is None or login["claims"]["client_id"] != form.get("client_id"):
            return _json({"active": False})
        return _json({"active": True, "client_id": form["client_id"], "scope": login["claims"].get("scope"),
                      "sub": self.federation.pairwise(form["client_id"], login["fiscal_code"])})

    def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        login = self.access.get(token.strip()) if scheme.lower() == "bearer" else None
        if login is None:
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if self.faults.get("malformed"):
            return Response("not-a-jwe", mimetype="application/jose")
        body = self.federation.userinfo(login["claims"]["client_id"], login["fiscal_code"],
                                        CITIZENS[login["fiscal_code"]], login["rp"])
        return Response(body, mimetype="application/jose")
