"""The CIE twin's federation logic: a trust anchor and an OpenID Provider, as the SPID/CIE OIDC rules shape them.

Why: CIE login end to end on one machine. The trust anchor publishes its Entity Configuration and
signs statements about its members (the OP, and the Comuni listed as RPs, whose keys it reads from
their own Entity Configurations — the onboarding step) and issues trust marks; the OP checks every
RP request the way a real CIE OP does: RP trust chain, signed request object, PKCE S256,
state/nonce length, redirect_uri, private_key_jwt; it answers with a signed ID token and
signed+encrypted userinfo. With `intermediate=True` the OP sits under an intermediate authority
(`/ia`, as a Soggetto Aggregatore would), so the RP resolves a two-hop chain OP -> IA -> TA.
`chain_faults` breaks the chain on purpose (tests): `intermediate_bad_signature`,
`expired_statement`, `policy_violation`, `foreign_anchor`.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jose import jwe, jwt

from services.spid.domain import saml
from services.spid.domain.cie import CLIENT_ASSERTION_TYPE, FISCAL_NUMBER, code_challenge
from services.spid.domain.federation import (
    STATEMENT_TYP,
    WELL_KNOWN,
    FederationError,
    private_key,
    public_jwk,
    resolve_trust_chain,
    sign_jwt,
    sign_statement,
    verify_jwt,
)

LIFETIME = 24 * 3600
CHAIN_FAULTS = frozenset({"intermediate_bad_signature", "expired_statement", "policy_violation", "foreign_anchor"})
FOREIGN_ANCHOR = "https://registry.unknown-federation.example"
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
# What the anchor imposes on OPs (the rules' TA -> OP policy, abridged) and what the intermediate adds.
OP_POLICY: dict[str, Any] = {
    "acr_values_supported": {"subset_of": list(saml.LEVELS.values()), "essential": True},
    "scopes_supported": {"superset_of": ["openid"]},
    "token_endpoint_auth_methods_supported": {"subset_of": ["private_key_jwt"], "essential": True},
}
IA_OP_POLICY: dict[str, Any] = {
    "code_challenge_methods_supported": {"subset_of": ["S256"], "essential": True},
    "response_types_supported": {"subset_of": ["code"], "essential": True},
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
    intermediate: bool = False
    ia_key: str = field(default="", repr=False)
    require_rp_trust_mark: bool = False
    intermediate_marks: bool = False  # the intermediate issues the OP's trust mark, accredited by the anchor
    chain_faults: set[str] = field(default_factory=set)

    @property
    def trust_anchor(self) -> str:
        return f"{self.base}/ta"

    @property
    def intermediate_authority(self) -> str:
        return f"{self.base}/ia"

    @property
    def op_mark(self) -> str:
        return f"{self.trust_anchor}/openid_provider/public/"

    @property
    def rp_mark(self) -> str:
        return f"{self.trust_anchor}/openid_relying_party/public/"

    def trust_mark(self, mark_id: str, subject: str, now: int | None = None) -> str:
        """A trust mark the anchor issues to a member (onboarding done)."""
        if mark_id not in (self.op_mark, self.rp_mark) or (subject != self.provider and subject not in self.members):
            raise OidcError("not_found", "no such trust mark for this entity")
        issued = now or int(time.time())
        by_intermediate = self.intermediate and self.intermediate_marks and mark_id == self.op_mark
        issuer, key = ((self.intermediate_authority, self.ia_key) if by_intermediate
                       else (self.trust_anchor, self.ta_key))
        return sign_jwt({"iss": issuer, "sub": subject, "id": mark_id, "iat": issued,
                         "exp": issued + LIFETIME, "organization_type": "public"}, key, typ="trust-mark+jwt")

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
                "federation_resolve_endpoint": f"{self.trust_anchor}/resolve",
                "federation_trust_mark_endpoint": f"{self.trust_anchor}/trust_mark",
            }},
            "trust_mark_issuers": {
                self.op_mark: [self.trust_anchor] + ([self.intermediate_authority] if self.intermediate_marks else []),
                self.rp_mark: [self.trust_anchor]},
            "constraints": {"max_path_length": 1},
        }, self.ta_key)

    # -- intermediate (optional) -------------------------------------------------------------------
    def intermediate_configuration(self, now: int | None = None) -> str:
        if not self.intermediate:
            raise OidcError("not_found", "no intermediate in this federation")
        issued = now or int(time.time())
        return sign_statement({
            "iss": self.intermediate_authority, "sub": self.intermediate_authority, "iat": issued,
            "exp": issued + LIFETIME, "jwks": {"keys": [public_jwk(self.ia_key)]},
            "authority_hints": [self.trust_anchor],
            "metadata": {"federation_entity": {
                "organization_name": "CIE federation twin (intermediate)", "homepage_uri": self.base,
                "contacts": ["sandbox@example.invalid"],
                "federation_fetch_endpoint": f"{self.intermediate_authority}/fetch"}},
        }, self.ia_key)

    def intermediate_statement(self, subject: str, now: int | None = None) -> str:
        """The intermediate's statement about the OP (the only entity under it)."""
        if not self.intermediate or subject != self.provider:
            raise OidcError("not_found", "not a subordinate of this intermediate")
        issued = now or int(time.time())
        exp = issued - 10 if "expired_statement" in self.chain_faults else issued + LIFETIME
        claims = {"iss": self.intermediate_authority, "sub": subject, "iat": issued - 3600, "exp": exp,
                  "jwks": {"keys": [public_jwk(self.op_federation_key)]},
                  "metadata_policy": {"openid_provider": IA_OP_POLICY}}
        if "intermediate_bad_signature" in self.chain_faults:
            # names the intermediate's key but is signed with another one: the RP must refuse it
            return str(jwt.encode(claims, private_key(self.ta_key), algorithm="RS256",
                                  headers={"kid": public_jwk(self.ia_key)["kid"], "typ": STATEMENT_TYP}))
        return sign_statement(claims, self.ia_key)

    def subordinate_statement(self, subject: str, fetch: Callable[[str], str], now: int | None = None) -> str:
        """The anchor's statement about a member: its federation keys and the metadata policy."""
        issued = now or int(time.time())
        claims: dict[str, Any] = {"iss": self.trust_anchor, "sub": subject, "iat": issued, "exp": issued + LIFETIME}
        if subject == self.provider and not self.intermediate:
            claims["jwks"] = {"keys": [public_jwk(self.op_federation_key)]}
            claims["metadata_policy"] = {"openid_provider": OP_POLICY}
            if "expired_statement" in self.chain_faults:
                claims.update(iat=issued - 3600, exp=issued - 10)
        elif subject == self.intermediate_authority and self.intermediate:
            claims["jwks"] = {"keys": [public_jwk(self.ia_key)]}
            claims["metadata_policy"] = {"openid_provider": OP_POLICY}
            claims["constraints"] = {"max_path_length": 1}
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

    def resolve(self, subject: str, anchor: str, fetch: Callable[[str], str]) -> str:
        """The resolve endpoint: the subject's verified chain and final metadata, signed by the anchor."""
        if anchor.rstrip("/") != self.trust_anchor:
            raise OidcError("not_found", "this resolver only answers for its own trust anchor")
        try:
            chain = resolve_trust_chain(subject, self.trust_anchor, fetch,
                                        trust_anchor_jwks={"keys": [public_jwk(self.ta_key)]})
        except FederationError as exc:
            raise OidcError("invalid_trust_chain", exc.detail) from None
        return sign_jwt({**chain.resolve_response(), "iat": int(time.time())}, self.ta_key,
                        typ="resolve-response+jwt")

    # -- OpenID Provider ---------------------------------------------------------------------------
    def endpoints(self) -> dict[str, str]:
        return {"authorization_endpoint": f"{self.provider}/authorization",
                "token_endpoint": f"{self.provider}/token", "userinfo_endpoint": f"{self.provider}/userinfo",
                "revocation_endpoint": f"{self.provider}/revocation",
                "introspection_endpoint": f"{self.provider}/introspection"}

    def provider_configuration(self, now: int | None = None) -> str:
        issued = now or int(time.time())
        superior = (FOREIGN_ANCHOR if "foreign_anchor" in self.chain_faults
                    else self.intermediate_authority if self.intermediate else self.trust_anchor)
        auth_methods = ["client_secret_basic"] if "policy_violation" in self.chain_faults else ["private_key_jwt"]
        return sign_statement({
            "iss": self.provider, "sub": self.provider, "iat": issued, "exp": issued + LIFETIME,
            "jwks": {"keys": [public_jwk(self.op_federation_key)]}, "authority_hints": [superior],
            "trust_marks": [{"id": self.op_mark, "trust_mark": self.trust_mark(self.op_mark, self.provider)}],
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
                    "token_endpoint_auth_methods_supported": auth_methods,
                    "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS512"],
                    "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
                    "userinfo_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
                    "userinfo_signing_alg_values_supported": ["RS256", "RS512"],
                    "request_object_signing_alg_values_supported": ["RS256", "RS512"],
                    "id_token_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
                    "id_token_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
                    "request_object_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
                    "request_object_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
                    "response_modes_supported": ["query", "form_post"],
                    "claims_parameter_supported": True, "authorization_response_iss_parameter_supported": True,
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
                                        trust_anchor_jwks={"keys": [public_jwk(self.ta_key)]},
                                        required_trust_marks=(self.rp_mark,) if self.require_rp_trust_mark else ())
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
        scopes = str(claims.get("scope", "")).split()
        if set(scopes) != set(str(query.get("scope", "")).split()):
            raise OidcError("invalid_request", "scope differs inside the request object")
        if "offline_access" in scopes and "consent" not in str(claims.get("prompt", "")).split():
            raise OidcError("invalid_request", "offline_access requires prompt=consent")
        if claims.get("code_challenge_method") != "S256" or not claims.get("code_challenge"):
            raise OidcError("invalid_request", "PKCE S256 is required")
        for name in ("state", "nonce"):
            if not _ALNUM32.match(str(claims.get(name, ""))):
                raise OidcError("invalid_request", f"{name} must be at least 32 alphanumeric characters")
        return claims

    def id_token(self, client_id: str, fiscal_code: str, nonce: str | None, level: int) -> str:
        """Signed ID token; a refreshed one carries no nonce (OpenID Connect Core 12.2)."""
        now = int(time.time())
        claims = {"iss": self.provider, "sub": self.pairwise(client_id, fiscal_code), "aud": client_id,
                  "iat": now, "exp": now + 600, "acr": saml.LEVELS[level], "jti": str(uuid.uuid4())}
        if nonce is not None:
            claims["nonce"] = nonce
        return sign_jwt(claims, self.op_core_key)

    def bearer_token(self, client_id: str, kind: str, lifetime: int) -> str:
        """Access and refresh tokens as signed JWTs (as the reference OP issues them); opaque to the RP."""
        now = int(time.time())
        return sign_jwt({"iss": self.provider, "sub": client_id, "aud": [client_id], "client_id": client_id,
                         "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4()), "token_use": kind},
                        self.op_core_key)

    def pairwise(self, client_id: str, fiscal_code: str) -> str:
        return hashlib.sha256(f"{client_id}|{fiscal_code}".encode()).hexdigest()

    def check_client_assertion(self, form: Mapping[str, str], rp: dict[str, Any],
                               endpoint: str = "token_endpoint") -> None:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE or not form.get("client_assertion"):
            raise OidcError("invalid_client", "private_key_jwt client authentication is required")
        try:
            claims = verify_jwt(form["client_assertion"], rp["jwks"], what="client assertion",
                                audience=self.endpoints()[endpoint], issuer=form.get("client_id"))
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
