"""The one table from error codes to HTTP statuses, and problem+json rendering.

Why: services raise typed errors with stable codes and know nothing of HTTP; the gateway decides
the status here and nowhere else. An error this table does not know is a 500 whose detail never
leaks the internal message.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

from sportello.errors import SportelloError


class RouteNotFound(SportelloError):
    code = "route.not_found"
    title = "No such route"


class MethodNotAllowed(SportelloError):
    code = "route.method_not_allowed"
    title = "Method not allowed"


class UpstreamTimeout(SportelloError):
    code = "upstream.timeout"
    title = "A service did not answer in time"


HTTP_STATUS: dict[str, int] = {
    "request.invalid": 400,
    "appio.message_invalid": 400,
    "appio.io_error": 502,
    "appio.io_bad_request": 502,
    "appio.io_unauthorized": 502,
    "appio.io_not_found": 502,
    "appio.io_malformed_reply": 502,
    "appio.io_outcome_unknown": 502,
    "appio.io_server_error": 502,
    "appio.io_throttled": 503,
    "appio.io_unavailable": 503,
    "appio.message_not_in_doubt": 409,
    "appio.resolution_not_confirmed": 409,
    "event.malformed": 400,
    "event.unknown_type": 400,
    "auth.unauthenticated": 401,
    "access.forbidden": 403,
    "resource.not_found": 404,
    "tenant.unknown": 404,
    "route.not_found": 404,
    "route.method_not_allowed": 405,
    "configuration.invalid": 500,
    "internal": 500,
    "service.unavailable": 503,
    "upstream.timeout": 504,
    "pagopa.position.invalid_transition": 409,
    "pagopa.gpd.rejected": 502,
    "pagopa.gpd.unavailable": 503,
    "pagopa.checkout.unavailable": 502,
    "pagopa.position.not_payable": 409,
    "pagopa.nodo.rejected": 502,
    "pagopa.nodo.unavailable": 503,
    "pagopa.idempotency.conflict": 409,
    # login (issue 3): a rejected SAML response is the caller's bad input; the IdP's "no" is a 403
    "spid.response_rejected": 400,
    "spid.signature_invalid": 400,
    "spid.request_unknown": 400,
    "spid.idp_unknown": 400,
    "spid.assertion_replayed": 409,
    "spid.level_insufficient": 403,
    "spid.authentication_failed": 403,
    "spid.login_cancelled": 403,
    "auth.invalid_grant": 400,
    "cie.federation_untrusted": 502,
    "cie.provider_unavailable": 503,
    # registry (issue 6): ANPR's refusals are about the request; PDND/ANPR trouble is upstream
    "anpr.reason_required": 400,
    "anpr.certificate_not_allowed": 403,
    "anpr.resident_not_found": 404,
    "anpr.not_certifiable": 422,
    "anpr.refused": 422,
    "anpr.quota_exhausted": 429,
    "anpr.issue_in_progress": 409,
    "anpr.rate_limited": 429,
    "anpr.pdnd_rejected": 502,
    "anpr.pdnd_unauthorized": 502,
    "anpr.unavailable": 503,
}

PROBLEM_JSON = "application/problem+json"


def problem(error: SportelloError | None, *, request_id: str, instance: str | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """Render an error as RFC 9457 problem details. Unknown errors become an opaque 500."""
    if error is None or error.code not in HTTP_STATUS or error.code == "internal":  # the bare base class too
        code, title, detail, status = "internal", "Internal error", "unexpected error; quote the request id", 500
    else:
        code, title, detail, status = error.code, error.title, error.detail, HTTP_STATUS[error.code]
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="sportello"', **(headers or {})}
    body: dict[str, Any] = {
        "type": f"urn:sportello:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }
    if instance:
        body["instance"] = instance
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON,
                    headers={"X-Request-ID": request_id, **(headers or {})})
