"""CIE login: the Comune as an OpenID Connect Federation Relying Party (SPID/CIE OIDC rules).

Why each piece: the Entity Configuration is how the OP learns our keys and redirect URIs (no
manual registration); the authorization request travels as a signed request object (RS256) so
it cannot be altered in the browser; PKCE S256 binds the code to this login; `state` (≥32 chars)
binds the callback to the pending login and `nonce` (≥32 chars) the ID token to it; the token
endpoint authenticates us with `private_key_jwt`; the ID token is verified with the OP keys the
trust chain vouches for; userinfo arrives signed and then encrypted to our encryption key
(RSA-OAEP, A256CBC-HS512), so only we can read the citizen's attributes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from jose import jwe
from jose.exceptions import JWEError
from stdnum.it import codicefiscale

from services.spid.domain import saml
from services.spid.domain.errors import ResponseRejected, UnknownIdentityProvider
from services.spid.domain.federation import (
    FederationError,
    TrustChain,
    private_key,
    public_jwk,
    sign_jwt,
    sign_statement,
    unverified_claims,
    verify_jwt,
)
from services.spid.domain.response import Citizen
from sportello.tenants import Tenant

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FISCAL_NUMBER = "https://attributes.eid.gov.it/fiscal_number"
USERINFO_ALG, USERINFO_ENC = "RSA-OAEP", "A256CBC-HS512"
STATEMENT_LIFETIME = 24 * 3600
REQUEST_LIFETIME = 600
USERINFO_CLAIMS = {"given_name": None, "family_name": None, "email": None, FISCAL_NUMBER: {"essential": True}}


@dataclass(frozen=True)
class RelyingParty:
    tenant: str
    client_id: str
    redirect_uri: str
    provider: str
    trust_anchor: str
    trust_anchor_jwks: dict[str, Any] | None
    organization_name: str
    homepage_uri: str
    contacts: tuple[str, ...]
    default_level: int
    federation_key: str = field(repr=False)
    signing_key: str = field(repr=False)
    encryption_key: str = field(repr=False)
    trust_anchor_discovery: bool = False  # sandbox only: anchor keys taken from its own configuration
    authority_hints: tuple[str, ...] = ()
    trust_marks: tuple[dict[str, str], ...] = ()
    required_trust_marks: tuple[str, ...] = ()
    offline_access: bool = False


def relying_party(tenant: Tenant) -> RelyingParty:
    config = tenant.spid.cie if tenant.spid else None
    if tenant.spid is None or config is None:
        raise UnknownIdentityProvider(f"tenant {tenant.id!r} has no CIE configuration")
    client_id = str(config.client_id).rstrip("/")
    return RelyingParty(
        tenant=tenant.id, client_id=client_id,
        redirect_uri=str(config.redirect_uri) if config.redirect_uri else f"{client_id}/callback",
        provider=str(config.provider).rstrip("/"), trust_anchor=str(config.trust_anchor).rstrip("/"),
        trust_anchor_jwks=json.loads(config.trust_anchor_jwks) if config.trust_anchor_jwks else None,
        organization_name=tenant.name,
        homepage_uri=str(tenant.spid.organization_url or client_id),
        contacts=config.contacts or (tenant.spid.contact_email,), default_level=tenant.spid.default_level,
        federation_key=config.federation_key.get_secret_value(), signing_key=config.signing_key.get_secret_value(),
        encryption_key=config.encryption_key.get_secret_value(),
        trust_anchor_discovery=config.trust_anchor_discovery,
        authority_hints=(tuple(str(h).rstrip("/") for h in config.authority_hints)
                         or (str(config.trust_anchor).rstrip("/"),)),
        trust_marks=tuple(dict(m) for m in config.trust_marks), required_trust_marks=config.required_trust_marks,
        offline_access=config.offline_access,
    )


def entity_configuration(rp: RelyingParty, now: float | None = None) -> str:
    """The RP's self-signed Entity Configuration (shape of the rules' example EN 1.1)."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": rp.client_id, "sub": rp.client_id, "iat": issued, "exp": issued + STATEMENT_LIFETIME,
        "jwks": {"keys": [public_jwk(rp.federation_key)]},
        "authority_hints": list(rp.authority_hints or (rp.trust_anchor,)),
        "metadata": {
            "openid_relying_party": {
                "application_type": "web", "client_id": rp.client_id, "client_registration_types": ["automatic"],
                "client_name": rp.organization_name, "contacts": list(rp.contacts),
                "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [rp.redirect_uri],
                "response_types": ["code"], "subject_type": "pairwise",
                "jwks": {"keys": [public_jwk(rp.signing_key, "sig"), public_jwk(rp.encryption_key, "enc")]},
                "id_token_signed_response_alg": "RS256", "userinfo_signed_response_alg": "RS256",
                "userinfo_encrypted_response_alg": USERINFO_ALG, "userinfo_encrypted_response_enc": USERINFO_ENC,
                "token_endpoint_auth_method": "private_key_jwt",
            },
            "federation_entity": {
                "organization_name": rp.organization_name, "homepage_uri": rp.homepage_uri,
                "contacts": list(rp.contacts),
            },
        },
        "trust_marks": [{"id": m["id"], "trust_mark": m["trust_mark"]} for m in rp.trust_marks],
    }
    return sign_statement(claims, rp.federation_key)


def _random(length_bytes: int = 24) -> str:
    """Alphanumeric (hex) random string: `state`/`nonce` must be ≥32 alphanumeric characters."""
    return secrets.token_hex(length_bytes)


def code_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class PendingCie:
    state: str
    nonce: str
    code_verifier: str
    level: int


def provider_metadata(chain: TrustChain) -> dict[str, Any]:
    op = chain.metadata.get("openid_provider")
    if not isinstance(op, dict):
        raise FederationError("the provider's chain carries no openid_provider metadata")
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks"):
        if not op.get(name):
            raise FederationError(f"openid_provider metadata lacks {name}")
    if "S256" not in op.get("code_challenge_methods_supported", ["S256"]):
        raise FederationError("the provider does not support PKCE S256")
    return op


def authorization_request(rp: RelyingParty, op: dict[str, Any], *, level: int,
                          now: float | None = None) -> tuple[str, PendingCie]:
    """The URL the browser follows to the OP, and what to remember until the callback."""
    if level not in saml.LEVELS:
        raise ResponseRejected("CIE level must be 1, 2 or 3")
    issued = int(now if now is not None else time.time())
    pending = PendingCie(state=_random(), nonce=_random(), code_verifier=secrets.token_urlsafe(48), level=level)
    scope = "openid offline_access" if rp.offline_access else "openid"  # offline_access: prompt has consent
    request = {
        "iss": rp.client_id, "aud": [op["issuer"], op["authorization_endpoint"]],
        "iat": issued, "exp": issued + REQUEST_LIFETIME, "jti": str(uuid.uuid4()),
        "client_id": rp.client_id, "response_type": "code", "scope": scope, "redirect_uri": rp.redirect_uri,
        "state": pending.state, "nonce": pending.nonce, "code_challenge": code_challenge(pending.code_verifier),
        "code_challenge_method": "S256", "prompt": "consent login",
        "acr_values": " ".join(saml.LEVELS[n] for n in range(level, 4)),
        "claims": {"id_token": {"acr": {"essential": True}}, "userinfo": USERINFO_CLAIMS},
    }
    signed = sign_jwt(request, rp.signing_key)
    query = urlencode({"client_id": rp.client_id, "response_type": "code", "scope": scope,
                       "code_challenge": request["code_challenge"], "code_challenge_method": "S256",
                       "request": signed})
    return f"{op['authorization_endpoint']}?{query}", pending


def client_assertion(rp: RelyingParty, audience: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    return sign_jwt({"iss": rp.client_id, "sub": rp.client_id, "aud": audience, "iat": issued,
                     "exp": issued + 60, "jti": str(uuid.uuid4())}, rp.signing_key)


def token_request(rp: RelyingParty, op: dict[str, Any], *, code: str, pending: PendingCie,
                  now: float | None = None) -> dict[str, str]:
    """The form posted to the OP's token endpoint (`private_key_jwt` + PKCE verifier)."""
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
            "client_id": rp.client_id, "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(rp, op["token_endpoint"], now), "code_verifier": pending.code_verifier}


def refresh_request(rp: RelyingParty, op: dict[str, Any], *, refresh_token: str,
                    now: float | None = None) -> dict[str, str]:
    """The refresh_token grant (rules: only with `offline_access`, granted with prompt=consent)."""
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": rp.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(rp, op["token_endpoint"], now)}


def revocation_request(rp: RelyingParty, op: dict[str, Any], *, token: str, hint: str = "refresh_token",
                       now: float | None = None) -> dict[str, str]:
    """RFC 7009 revocation at the OP's revocation_endpoint, authenticated with `private_key_jwt`."""
    return {"token": token, "token_type_hint": hint, "client_id": rp.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(rp, op["revocation_endpoint"], now)}


def seal(rp: RelyingParty, data: dict[str, Any]) -> str:
    """The OP's tokens at rest: a JWE to our own encryption key (a database dump alone cannot use them)."""
    return str(jwe.encrypt(json.dumps(data).encode(), public_jwk(rp.encryption_key), algorithm=USERINFO_ALG,
                           encryption=USERINFO_ENC).decode())


def unseal(rp: RelyingParty, token: str) -> dict[str, Any]:
    try:
        return dict(json.loads(jwe.decrypt(token, private_key(rp.encryption_key))))
    except (JWEError, ValueError):
        raise ResponseRejected("the stored provider tokens cannot be read with our key") from None


def validate_refreshed_id_token(id_token: str, rp: RelyingParty, op: dict[str, Any], subject: str) -> dict[str, Any]:
    """A refreshed ID token: same issuer, audience and subject as the login's (no nonce: Core 12.2)."""
    claims = verify_jwt(id_token, op["jwks"], what="ID token", audience=rp.client_id, issuer=op["issuer"])
    if claims.get("sub") != subject:
        raise ResponseRejected("the refreshed ID token is about another subject")
    return claims


def validate_id_token(id_token: str, rp: RelyingParty, op: dict[str, Any], pending: PendingCie) -> dict[str, Any]:
    claims = verify_jwt(id_token, op["jwks"], what="ID token", audience=rp.client_id, issuer=op["issuer"])
    if claims.get("nonce") != pending.nonce:
        raise ResponseRejected("ID token nonce does not match this login")
    if not claims.get("sub"):
        raise ResponseRejected("ID token has no subject")
    level = saml.LEVEL_OF.get(str(claims.get("acr", "")))
    if level is None:
        raise ResponseRejected("ID token acr is not a SPID/CIE level")
    if level < pending.level:
        from services.spid.domain.errors import LevelTooLow
        raise LevelTooLow(f"level {level} received, {pending.level} requested")
    return claims


def read_userinfo(body: str, rp: RelyingParty, op: dict[str, Any], id_claims: dict[str, Any]) -> Citizen:
    """Decrypt (our key), verify (the OP's keys) and map the userinfo to a typed citizen."""
    try:
        header = jwe.get_unverified_header(body)
    except JWEError:
        raise ResponseRejected("userinfo is not an encrypted JWT (JWE)") from None
    if header.get("alg") not in ("RSA-OAEP", "RSA-OAEP-256") or header.get("enc") not in (
            "A128CBC-HS256", "A256CBC-HS512"):
        raise ResponseRejected("userinfo encryption algorithms not accepted")
    try:
        inner = jwe.decrypt(body, private_key(rp.encryption_key))
    except JWEError:
        raise ResponseRejected("userinfo cannot be decrypted with our encryption key") from None
    # OpenID Connect Core 5.3.2: a signed userinfo SHOULD (not must) carry iss and aud, and needs no
    # iat/exp (the reference OP sends only sub and the claims): checked whenever they are present.
    present = unverified_claims(inner.decode(), "userinfo")
    claims = verify_jwt(inner.decode(), op["jwks"], what="userinfo",
                        audience=rp.client_id if "aud" in present else None,
                        issuer=op["issuer"] if "iss" in present else None, require_exp=False, require_iat=False)
    if claims.get("sub") != id_claims.get("sub"):
        raise ResponseRejected("userinfo is about another subject than the ID token")
    fiscal = str(claims.get(FISCAL_NUMBER, ""))
    if not fiscal.startswith("TINIT-"):
        raise ResponseRejected("fiscal_number must be TINIT-<fiscal code>")
    if not codicefiscale.is_valid(fiscal[6:]):
        raise ResponseRejected("fiscal_number is not a valid Italian fiscal code")
    return Citizen(fiscal_code=fiscal[6:], name=claims.get("given_name"), family_name=claims.get("family_name"),
                   email=claims.get("email"))
