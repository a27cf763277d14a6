"""Typed errors of the `anpr` service (stable codes; the gateway maps them in gateway/errors.py)."""

from __future__ import annotations

from sportello.errors import SportelloError


class PdndRejected(SportelloError):
    """PDND answered 400: our client assertion is malformed (a bug or a wrong configuration)."""

    code = "anpr.pdnd_rejected"
    title = "PDND rejected the client assertion"


class PdndUnauthorized(SportelloError):
    """PDND answered 401: unknown client, key or purpose, or the purpose is not active."""

    code = "anpr.pdnd_unauthorized"
    title = "PDND refused to issue a voucher"


class UpstreamRateLimited(SportelloError):
    """PDND or ANPR answered 429 (after our retries): try again later."""

    code = "anpr.rate_limited"
    title = "The national platform asks to slow down"


class QuotaExhausted(SportelloError):
    """Our own count of today's calls reached the e-service's daily quota: refused before ANPR does."""

    code = "anpr.quota_exhausted"
    title = "Daily quota of the ANPR e-service used up"


class AnprUnavailable(SportelloError):
    """ANPR or PDND did not answer properly (5xx, timeout, malformed body) after retries."""

    code = "anpr.unavailable"
    title = "ANPR is not available"


class AnprRefused(SportelloError):
    """ANPR answered with blocking errors (listaErrori); the detail carries its codes and texts."""

    code = "anpr.refused"
    title = "ANPR refused the request"


class ResidentNotFound(SportelloError):
    code = "anpr.resident_not_found"
    title = "No such resident in ANPR"


class NotCertifiable(SportelloError):
    code = "anpr.not_certifiable"
    title = "This certificate cannot be issued for this person"


class CertificateNotAllowed(SportelloError):
    code = "anpr.certificate_not_allowed"
    title = "This requester may not obtain this certificate"


class ReasonRequired(SportelloError):
    code = "anpr.reason_required"
    title = "A reason for the look-up is required"


class IssueInProgress(SportelloError):
    """Another worker is obtaining this certificate from ANPR right now (a duplicate delivery): retry later."""

    code = "anpr.issue_in_progress"
    title = "The certificate is being issued"
