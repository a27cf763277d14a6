"""The CIE twin's federation logic: a trust anchor and an OpenID Provider, as the SPID/CIE OIDC rules shape them.

Why: CIE login end to end on one machine. The trust anchor publishes its Entity Configuration and
signs statements about its members (the OP, and the Comuni listed as RPs, whose keys it reads from
their own Entity Configurations — the onboarding step); the OP checks every RP request the way a
real CIE OP does: RP trust chain, signed request object, PKCE S256, state/nonce length,
redirect_uri, private_key_jwt; it answers with a signed ID token and signed+encrypted userinfo.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jose import jwe

from services.spid.domain import saml
from services.spid.domain.cie import CLIENT_ASSERTION_TYPE, FISCAL_NUMBER, code_challenge
from services.spid.domain.federation import (
    STATEMENT_TYP,
    WELL_KNOWN,
    FederationError,
    public_jwk,
    resolve_trust_chain,
    sign_jwt,
    sign_statement,
    verify_jwt,
)

LIFETIME = 24 * 3600
_ALNUM32 = re.compile(r"^[A-Za-z0-9]{32,}$")

# What the trust anchor imposes on RPs (the rules' example EN 7 policy, the parts CIE needs).
RP_POLICY: dict[str, Any] = {
    "grant_types": {"subset_of": ["authorization_code", "refresh_token"], "superset_of": ["authorization_code"]},
    "token_endpoint_auth_method": {"one_of": ["private_key_jwt"], "essential": True},
    "client_registration_types": {"subset_of": ["automatic"], "essential": True},
    "userinfo_encrypted_response_alg": {"one_of": ["RSA-OAEP", "RSA-OAEP-256"], "essential": True},
    "userinfo_encrypted_response_enc": {"one_of": ["A128CBC-HS256", "A256CBC-HS512"], "essential": True},
    "redirect_uris": {"essential": True},
    "client_id": {"essential": True},
    "response_types": {"value": ["code"]},
}


class OidcError(Exception):
    """An OAuth error the twin reports (`error` code, description)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass
class Federation:
    base: str
    ta_key: str = field(repr=False)
    op_federation_key: str = field(repr=False)
    op_core_key: str = field(repr=False)
    members: tuple[str, ...] = ()

    @property
    def trust_anchor(self) -> str:
        return f"{self.base}/ta"

    @property
    def provider(self) -> str:
        return f"{self.base}/op"

    # -- trust anchor ------------------------------------------------------------------------------
    def anchor_configuration(self, now: int | None = None) -> str:
        issued = now or int(time.time())
        return sign_statement({
            "iss": self.trust_anchor, "sub": self.trust_anchor, "iat": issued, "exp": issued + LIFETIME,
            "jwks": {"keys": [public_jwk(self.ta_key)]},
            "metadata": {"federation_entity": {
                "organization_name": "CIE federation twin (trust anchor)", "homepage_uri": self.base,
                "contacts": ["sandbox@example.invalid"], "federation_fetch_endpoint": f"{self.trust_anchor}/fetch",
            }},
        }, self.ta_key)

    def subordinate_statement(self, subject: str, fetch: Callable[[str], str], now: int | None = None) -> str:
        """The anchor's statement about a member: its federation keys and the metadata policy."""
        issued = now or int(time.time())
        claims: dict[str, Any] = {"iss": self.trust_anchor, "sub": subject, "iat": issued, "exp": issued + LIFETIME}
        if subject == self.provider:
            claims["jwks"] = {"keys": [public_jwk(self.op_federation_key)]}
        elif subject in self.members:
            token = fetch(subject + WELL_KNOWN)  # onboarding: the anchor reads the member's own keys
            from services.spid.domain.federation import unverified_claims
            own = unverified_claims(token, "member entity configuration")
            verify_jwt(token, own.get("jwks") or {}, what="member entity configuration", typ=STATEMENT_TYP)
            claims["jwks"] = own["jwks"]
            claims["metadata_policy"] = {"openid_relying_party": RP_POLICY}
        else:
            raise OidcError("not_found", "not a member of this federation")
        return sign_statement(claims, self.ta_key)

    # -- OpenID Provider ---------------------------------------------------------------------------
    def endpoints(self) -> dict[str, str]:
        return {"authorization_endpoint": f"{self.provider}/authorization",
                "token_endpoint": f"{self.provider}/token", "userinfo_endpoint": f"{self.provider}/userinfo"}

    def provider_configuration(self, now: int | None = None) -> str:
        issued = now or int(time.time())
        return sign_statement({
            "iss": self.provider, "sub": self.provider, "iat": issued, "exp": issued + LIFETIME,
            "jwks": {"keys": [public_jwk(self.op_federation_key)]}, "authority_hints": [self.trust_anchor],
            "metadata": {
                "openid_provider": {
                    "issuer": self.provider, **self.endpoints(),
                    "jwks": {"keys": [public_jwk(self.op_core_key, "sig")]},
                    "client_registration_types_supported": ["automatic"],
                    "code_challenge_methods_supported": ["S256"],
                    "request_authentication_methods_supported": {"ar": ["request_object"]},
                    "acr_values_supported": list(saml.LEVELS.values()),
                    "claims_supported": ["given_name", "family_name", "email", FISCAL_NUMBER],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "offline_access"], "response_types_supported": ["code"],
                    "subject_types_supported": ["pairwise"], "request_parameter_supported": True,
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS512"],
                    "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
                    "userinfo_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
                    "userinfo_signing_alg_values_supported": ["RS256", "RS512"],
                    "request_object_signing_alg_values_supported": ["RS256", "RS512"],
                    "organization_name": "CIE OpenID Provider twin",
                },
                "federation_entity": {"organization_name": "CIE OpenID Provider twin", "homepage_uri": self.base,
                                      "contacts": ["sandbox@example.invalid"]},
            },
        }, self.op_federation_key)

    def relying_party(self, client_id: str, fetch: Callable[[str], str]) -> dict[str, Any]:
        """The RP's metadata through its trust chain to our anchor (no chain, no login)."""
        try:
            chain = resolve_trust_chain(client_id, self.trust_anchor, fetch,
                                        trust_anchor_jwks={"keys": [public_jwk(self.ta_key)]})
        except FederationError as exc:
            raise OidcError("invalid_client", f"relying party not trusted: {exc.detail}") from None
        metadata = chain.metadata.get("openid_relying_party")
        if not isinstance(metadata, dict):
            raise OidcError("invalid_client", "no openid_relying_party metadata")
        return metadata

    def read_request(self, query: Mapping[str, str], rp: dict[str, Any]) -> dict[str, Any]:
        """The authorization request: its signed request object, checked as a CIE OP does."""
        if not query.get("request"):
            raise OidcError("invalid_request", "the request object is required")
        try:
            claims = verify_jwt(query["request"], rp["jwks"], what="request object",
                                audience=self.provider, issuer=query.get("client_id"))
        except FederationError as exc:
            raise OidcError("invalid_request_object", str(exc.detail)) from None
        if claims.get("client_id") != query.get("client_id"):
            raise OidcError("invalid_request", "client_id differs inside the request object")
        if claims.get("redirect_uri") not in rp.get("redirect_uris", []):
            raise OidcError("invalid_request", "redirect_uri not registered")
        if claims.get("response_type") != "code" or "openid" not in str(query.get("scope", "")).split():
            raise OidcError("invalid_request", "response_type code and scope openid are required")
        if claims.get("code_challenge_method") != "S256" or not claims.get("code_challenge"):
            raise OidcError("invalid_request", "PKCE S256 is required")
        for name in ("state", "nonce"):
            if not _ALNUM32.match(str(claims.get(name, ""))):
                raise OidcError("invalid_request", f"{name} must be at least 32 alphanumeric characters")
        return claims

    def id_token(self, client_id: str, fiscal_code: str, nonce: str, level: int) -> str:
        now = int(time.time())
        return sign_jwt({"iss": self.provider, "sub": self.pairwise(client_id, fiscal_code), "aud": client_id,
                         "iat": now, "exp": now + 600, "nonce": nonce, "acr": saml.LEVELS[level],
                         "jti": str(uuid.uuid4())}, self.op_core_key)

    def pairwise(self, client_id: str, fiscal_code: str) -> str:
        return hashlib.sha256(f"{client_id}|{fiscal_code}".encode()).hexdigest()

    def check_client_assertion(self, form: Mapping[str, str], rp: dict[str, Any]) -> None:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE or not form.get("client_assertion"):
            raise OidcError("invalid_client", "private_key_jwt client authentication is required")
        try:
            claims = verify_jwt(form["client_assertion"], rp["jwks"], what="client assertion",
                                audience=self.endpoints()["token_endpoint"], issuer=form.get("client_id"))
        except FederationError as exc:
            raise OidcError("invalid_client", str(exc.detail)) from None
        if claims.get("sub") != form.get("client_id"):
            raise OidcError("invalid_client", "client assertion sub must be the client_id")

    @staticmethod
    def check_verifier(verifier: str, challenge: str) -> None:
        if not verifier or code_challenge(verifier) != challenge:
            raise OidcError("invalid_grant", "PKCE code_verifier does not match")

    def userinfo(self, client_id: str, fiscal_code: str, citizen: Mapping[str, str], rp: dict[str, Any]) -> str:
        """Signed by the OP, then encrypted to the RP's `enc` key (RSA-OAEP, A256CBC-HS512)."""
        now = int(time.time())
        signed = sign_jwt({"iss": self.provider, "aud": client_id, "sub": self.pairwise(client_id, fiscal_code),
                           "iat": now, "exp": now + 600, "given_name": citizen.get("name"),
                           "family_name": citizen.get("familyName"), "email": citizen.get("email"),
                           FISCAL_NUMBER: f"TINIT-{fiscal_code}"}, self.op_core_key)
        keys = [k for k in rp["jwks"]["keys"] if k.get("use") == "enc"]
        if not keys:
            raise OidcError("invalid_client", "the RP publishes no encryption key")
        return str(jwe.encrypt(signed.encode(), keys[0], algorithm=rp.get("userinfo_encrypted_response_alg",
                                                                             "RSA-OAEP"),
                               encryption=rp.get("userinfo_encrypted_response_enc", "A256CBC-HS512"),
                               cty="JWT", kid=keys[0].get("kid")).decode())
