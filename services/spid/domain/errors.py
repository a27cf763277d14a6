"""Typed login errors: each has a stable code the gateway maps to a 4xx status."""

from __future__ import annotations

from sportello.errors import SportelloError


class ResponseRejected(SportelloError):
    """The IdP's SAML response breaks a SPID rule; `detail` says which (never personal data)."""

    code = "spid.response_rejected"
    title = "SAML response rejected"


class SignatureInvalid(SportelloError):
    code = "spid.signature_invalid"
    title = "SAML signature not valid for the IdP's registered keys"


class UnknownRequest(SportelloError):
    """InResponseTo names no pending AuthnRequest of ours (expired, already used or forged)."""

    code = "spid.request_unknown"
    title = "No pending login for this response"


class AssertionReplayed(SportelloError):
    code = "spid.assertion_replayed"
    title = "This assertion was already used"


class LevelTooLow(SportelloError):
    code = "spid.level_insufficient"
    title = "Authentication level lower than requested"


class AuthenticationFailed(SportelloError):
    """The IdP reports the citizen could not be authenticated (SPID ErrorCode nr19-nr23)."""

    code = "spid.authentication_failed"
    title = "The identity provider could not authenticate the citizen"


class LoginCancelled(SportelloError):
    """The citizen cancelled, or refused consent (SPID ErrorCode nr22 / nr25)."""

    code = "spid.login_cancelled"
    title = "Login cancelled by the citizen"


class UnknownIdentityProvider(SportelloError):
    code = "spid.idp_unknown"
    title = "Unknown identity provider"


class InvalidGrant(SportelloError):
    """A login code or refresh token that is unknown, used, expired or revoked."""

    code = "auth.invalid_grant"
    title = "Invalid or expired grant"


class ProviderUnavailable(SportelloError):
    """The CIE OpenID Provider or trust anchor is down, busy (429) or unreachable."""

    code = "cie.provider_unavailable"
    title = "The CIE identity provider is not available"


class FederationError(SportelloError):
    """A CIE entity statement or trust chain that fails a federation rule; `detail` names the rule."""

    code = "cie.federation_untrusted"
    title = "OpenID Federation trust chain not valid"
