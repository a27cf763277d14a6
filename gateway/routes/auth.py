"""Login routes: SPID metadata, IdP choice, login start, the ACS, token exchange/refresh, logout.

Why this shape: the browser talks SAML with the IdP and posts the Response to the ACS; the ACS
does not hand tokens to the browser's URL bar, it hands a one-time code (60 s) that the portal
exchanges at `/auth/token` for a short-lived access token plus a refresh token (stored hashed in
`spid`, rotated on use, revoked at logout). Every route is per tenant; a token of one tenant is
refused on another tenant's routes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

import services.spid.domain.errors  # noqa: F401 - login errors arrive typed from `spid`
from gateway.http import api, json_response
from sportello.errors import ValidationFailed

MAX_FORM_BYTES = 512 * 1024


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _body(request: Request) -> dict[str, str]:
    """Form or JSON body as flat strings; anything else is a typed 400."""
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise ValidationFailed("request body too large")
    if request.mimetype == "application/json":
        try:
            data = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            raise ValidationFailed("body is not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValidationFailed("body must be a JSON object of strings")
        return data
    return {k: v for k, v in request.form.items()}


class AuthRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate` and `spid` proxy)."""

    spid: Any
    call: Any
    authenticate: Any
    authenticate_tenant: Any

    @api("GET", "/v1/tenants/<tenant>/auth/spid/metadata")
    def spid_metadata(self, request: Request, tenant: str) -> Response:
        xml = self.call(self.spid.sp_metadata, tenant)
        return Response(xml, mimetype="application/samlmetadata+xml")

    @api("GET", "/v1/tenants/<tenant>/auth/spid/idps")
    def spid_idps(self, request: Request, tenant: str) -> Response:
        return json_response({"identity_providers": self.call(self.spid.identity_providers, tenant)})

    @api("GET", "/v1/tenants/<tenant>/auth/spid/login")
    def spid_login(self, request: Request, tenant: str) -> Response:
        idp = request.args.get("idp", "")
        if not idp:
            raise ValidationFailed("choose an identity provider: ?idp=<entity id>")
        level_arg = request.args.get("level")
        if level_arg is not None and level_arg not in {"1", "2", "3"}:
            raise ValidationFailed("level must be 1, 2 or 3")
        binding = request.args.get("binding", "redirect")
        started = self.call(self.spid.start_login, tenant, idp, level=int(level_arg) if level_arg else None,
                            binding=binding, return_url=request.args.get("return_url"))
        if started["binding"] == "redirect":
            return _no_store(Response("", status=302, headers={"Location": started["url"]}))
        return _no_store(Response(started["html"], status=200, mimetype="text/html"))

    @api("POST", "/v1/tenants/<tenant>/auth/spid/acs")
    def spid_acs(self, request: Request, tenant: str) -> Response:
        form = _body(request)
        saml_response = form.get("SAMLResponse", "")
        if not saml_response:
            raise ValidationFailed("SAMLResponse missing")
        done = self.call(self.spid.complete_login, tenant, saml_response, form.get("RelayState"))
        if done.get("return_url"):
            location = f"{done['return_url']}{'&' if '?' in done['return_url'] else '?'}{urlencode({'code': done['code']})}"  # noqa: E501
            return _no_store(Response("", status=303, headers={"Location": location}))
        return _no_store(json_response({"code": done["code"], "expires_in": done["expires_in"]}))

    @api("POST", "/v1/tenants/<tenant>/auth/token")
    def auth_token(self, request: Request, tenant: str) -> Response:
        form = _body(request)
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code"):
            tokens = self.call(self.spid.exchange_code, tenant, form["code"])
        elif grant == "refresh_token" and form.get("refresh_token"):
            tokens = self.call(self.spid.refresh, tenant, form["refresh_token"])
        else:
            raise ValidationFailed("send grant_type=authorization_code with code, or refresh_token with refresh_token")
        return _no_store(json_response(tokens))

    @api("POST", "/v1/tenants/<tenant>/auth/logout")
    def auth_logout(self, request: Request, tenant: str) -> Response:
        principal = self.authenticate_tenant(request, tenant)
        form = _body(request)
        if not form.get("refresh_token"):
            raise ValidationFailed("refresh_token missing")
        return _no_store(json_response(self.call(self.spid.logout, tenant, principal.subject, form["refresh_token"])))

    @api("GET,POST", "/v1/tenants/<tenant>/auth/spid/slo")
    def spid_slo(self, request: Request, tenant: str) -> Response:
        """The SingleLogoutService: an IdP-initiated LogoutRequest, or the IdP's LogoutResponse to ours.

        Redirect binding: the raw query string goes to `spid` untouched (its signature covers the
        parameters exactly as encoded). To a LogoutRequest the browser is sent back to the IdP
        with our signed LogoutResponse.
        """
        if request.method == "GET":
            query = request.query_string.decode("ascii", errors="replace")
            if "SAMLRequest=" not in query and "SAMLResponse=" not in query:
                raise ValidationFailed("SAMLRequest or SAMLResponse missing")
            done = self.call(self.spid.single_logout, tenant, "redirect", query=query)
        else:
            form = _body(request)
            if not form.get("SAMLRequest") and not form.get("SAMLResponse"):
                raise ValidationFailed("SAMLRequest or SAMLResponse missing")
            done = self.call(self.spid.single_logout, tenant, "post", form=form)
        if done["kind"] == "logout_request":
            reply = done["reply"]
            if reply["binding"] == "redirect":
                return _no_store(Response("", status=302, headers={"Location": reply["url"]}))
            return _no_store(Response(reply["html"], status=200, mimetype="text/html"))
        return _no_store(json_response({"status": done["status"], "tenant": tenant}))

    # -- CIE (OpenID Connect Federation) ------------------------------------------------------------
    @api("GET", "/v1/tenants/<tenant>/auth/cie/.well-known/openid-federation")
    def cie_entity_configuration(self, request: Request, tenant: str) -> Response:
        """The Comune's self-signed Entity Configuration (its client_id is .../auth/cie)."""
        token = self.call(self.spid.cie_entity_configuration, tenant)
        return Response(token, mimetype="application/entity-statement+jwt")

    @api("GET", "/v1/tenants/<tenant>/auth/cie/login")
    def cie_login(self, request: Request, tenant: str) -> Response:
        level_arg = request.args.get("level")
        if level_arg is not None and level_arg not in {"1", "2", "3"}:
            raise ValidationFailed("level must be 1, 2 or 3")
        started = self.call(self.spid.start_cie_login, tenant, level=int(level_arg) if level_arg else None,
                            return_url=request.args.get("return_url"))
        return _no_store(Response("", status=302, headers={"Location": started["url"]}))

    @api("GET", "/v1/tenants/<tenant>/auth/cie/callback")
    def cie_callback(self, request: Request, tenant: str) -> Response:
        """The redirect_uri: the OP sends the browser back with `code` (or `error`) and `state`."""
        state = request.args.get("state", "")
        if not state or len(state) > 128:
            raise ValidationFailed("state missing or too long")
        if not request.args.get("code") and not request.args.get("error"):
            raise ValidationFailed("code or error missing")
        done = self.call(self.spid.complete_cie_login, tenant, state, code=request.args.get("code"),
                         error=request.args.get("error"), issuer=request.args.get("iss"))
        if done.get("return_url"):
            location = f"{done['return_url']}{'&' if '?' in done['return_url'] else '?'}{urlencode({'code': done['code']})}"  # noqa: E501
            return _no_store(Response("", status=303, headers={"Location": location}))
        return _no_store(json_response({"code": done["code"], "expires_in": done["expires_in"]}))
