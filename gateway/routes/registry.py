"""Registry routes (ANPR): citizens request and download certificates; operators look residents up and
issue at the counter, always with a stated reason; anyone verifies a certificate by its code.

Why: the tenant in the path must be the token's tenant, a citizen only ever acts as the fiscal code
in his token, and the public verification route needs no login but reveals nothing personal.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from werkzeug.wrappers import Request, Response

import services.anpr.domain.errors  # noqa: F401 - anpr's errors arrive typed over RPC
from gateway.http import api, int_arg, json_object, json_response
from sportello.errors import ValidationFailed
from sportello.tokens import Principal, Role

MAX_JSON_BYTES = 64 * 1024
MAX_VERIFY_BYTES = 12 * 1024 * 1024
BACK_OFFICE: tuple[Role, Role] = ("operator", "admin")


def _actor(principal: Principal, role: str) -> dict[str, Any]:
    return {"subject": principal.subject, "role": role, "level": principal.level}


def _optional_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{name} must be an integer")
    return value


def _requester(data: dict[str, Any]) -> dict[str, str] | None:
    """At the counter: the person asking, when not the subject ({fiscal_code, surname, name})."""
    value = data.get("requester")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("fiscal_code", "surname",
                                                                                     "name")):
        raise ValidationFailed("requester must be {fiscal_code, surname, name}")
    return {k: value[k] for k in ("fiscal_code", "surname", "name")}


class RegistryRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate` and `anpr` proxy)."""

    call: Any
    authenticate: Any
    authenticate_tenant: Any
    anpr: Any

    def _registry_principal(self, request: Request, tenant: str, *roles: Role) -> Principal:
        principal: Principal = self.authenticate_tenant(request, tenant, *roles)
        return principal

    @api("GET", "/v1/tenants/<tenant>/certificates/catalogue")
    def certificate_catalogue(self, request: Request, tenant: str) -> Response:
        self._registry_principal(request, tenant)
        return json_response(self.call(self.anpr.certificate_catalogue))

    @api("POST", "/v1/tenants/<tenant>/certificates")
    def request_certificate(self, request: Request, tenant: str) -> Response:
        principal = self._registry_principal(request, tenant, "citizen", *BACK_OFFICE)
        data = json_object(request, limit=MAX_JSON_BYTES, empty_ok=True)
        certificate_type = _optional_int(data, "certificate_type")
        if certificate_type is None:
            raise ValidationFailed("certificate_type is required")
        result = self.call(self.anpr.request_certificate, tenant, _actor(principal, "citizen"), certificate_type,
                           exemption=_optional_int(data, "exemption"),
                           exemption_description=data.get("exemption_description"))
        return json_response(result, 201 if result["status"] == "issued" else 202)

    @api("GET", "/v1/tenants/<tenant>/certificates")
    def my_certificate_requests(self, request: Request, tenant: str) -> Response:
        principal = self._registry_principal(request, tenant, "citizen", *BACK_OFFICE)
        limit = int_arg(request, "limit", default=50)
        return json_response({"requests": self.call(self.anpr.my_certificate_requests, tenant,
                                                     _actor(principal, "citizen"), limit)})

    @api("GET", "/v1/tenants/<tenant>/certificates/<request_id>")
    def certificate_status(self, request: Request, tenant: str, request_id: str) -> Response:
        principal = self._registry_principal(request, tenant)
        role = "operator" if principal.has_role(*BACK_OFFICE) else "citizen"
        return json_response(self.call(self.anpr.certificate_status, tenant, _actor(principal, role), request_id))

    @api("GET", "/v1/tenants/<tenant>/certificates/<request_id>/document")
    def certificate_document(self, request: Request, tenant: str, request_id: str) -> Response:
        principal = self._registry_principal(request, tenant)
        role = "operator" if principal.has_role(*BACK_OFFICE) else "citizen"
        encoded = self.call(self.anpr.download_certificate, tenant, _actor(principal, role), request_id)
        return Response(base64.b64decode(encoded), mimetype="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="certificato-{request_id}.pdf"', "Cache-Control": "no-store"})

    @api("POST", "/v1/tenants/<tenant>/registry/lookups")
    def lookup_resident(self, request: Request, tenant: str) -> Response:
        principal = self._registry_principal(request, tenant, *BACK_OFFICE)
        data = json_object(request, limit=MAX_JSON_BYTES, empty_ok=True)
        return json_response(self.call(self.anpr.lookup_resident, tenant, _actor(principal, "operator"),
                               str(data.get("fiscal_code") or ""), str(data.get("reason") or "")))

    @api("POST", "/v1/tenants/<tenant>/registry/certificates")
    def issue_at_counter(self, request: Request, tenant: str) -> Response:
        principal = self._registry_principal(request, tenant, *BACK_OFFICE)
        data = json_object(request, limit=MAX_JSON_BYTES, empty_ok=True)
        certificate_type = _optional_int(data, "certificate_type")
        if certificate_type is None:
            raise ValidationFailed("certificate_type is required")
        result = self.call(self.anpr.request_certificate, tenant, _actor(principal, "operator"), certificate_type,
                           exemption=_optional_int(data, "exemption"),
                           exemption_description=data.get("exemption_description"),
                           subject=str(data.get("fiscal_code") or ""), at_counter=True,
                           reason=str(data.get("reason") or "") or None, requester=_requester(data))
        return json_response(result, 201 if result["status"] == "issued" else 202)

    @api("GET", "/v1/tenants/<tenant>/registry/audit")
    def registry_audit(self, request: Request, tenant: str) -> Response:
        principal = self._registry_principal(request, tenant, *BACK_OFFICE)
        return json_response({"entries": self.call(self.anpr.audit_trail, tenant, _actor(principal, "operator"))})

    @api("GET", "/v1/public/tenants/<tenant>/certificates/verify/<code>")
    def verify_code(self, request: Request, tenant: str, code: str) -> Response:
        return json_response(self.call(self.anpr.verify_certificate, tenant, code))

    @api("GET", "/v1/public/tenants/<tenant>/certificates/verify/<code>/qr")
    def verification_qr(self, request: Request, tenant: str, code: str) -> Response:
        """The QR code to print on or beside the certificate: it opens the public verification."""
        answer = self.call(self.anpr.verification_qr, tenant, code)
        return Response(answer["svg"], mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    @api("POST", "/v1/public/tenants/<tenant>/certificates/verify")
    def verify_document(self, request: Request, tenant: str) -> Response:
        data = json_object(request, limit=MAX_VERIFY_BYTES, empty_ok=True)
        document = data.get("document_base64")
        if document is not None:
            if not isinstance(document, str):
                raise ValidationFailed("document_base64 must be a string (the PDF in base64)")
            try:
                base64.b64decode(document, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed("document_base64 is not base64") from None
        code = data.get("code")
        if code is not None and not isinstance(code, str):
            raise ValidationFailed("code must be a string")
        return json_response(self.call(self.anpr.verify_certificate, tenant, code or "", document))
