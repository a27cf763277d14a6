"""OpenID Connect Federation 1.0 as the SPID/CIE OIDC rules profile it: entity statements, trust chains.

Why: in the CIE federation nobody registers clients by hand. Each entity publishes a self-signed
Entity Configuration at `/.well-known/openid-federation` (JWS, `typ: entity-statement+jwt`); the
trust anchor signs an Entity Statement about each member (its federation keys and a metadata
policy). An entity's metadata is trusted only through such a chain ending at a trust anchor whose
keys we hold, and only until the earliest `exp` in the chain.
Used by the Relying Party (services/spid) and by the OP/trust-anchor twin (sandbox/cie_op).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt
from jose.exceptions import JWTError

from services.spid.domain.errors import FederationError

WELL_KNOWN = "/.well-known/openid-federation"
STATEMENT_TYP = "entity-statement+jwt"
STATEMENT_MEDIA_TYPE = "application/entity-statement+jwt"
SIGNING_ALGORITHMS = ("RS256", "RS512")  # SPID/CIE OIDC rules: RS256/RS512 (ES* not used here)
MAX_STATEMENT_BYTES = 64 * 1024
__all__ = ["FederationError", "TrustChain", "apply_policy", "public_jwk", "resolve_trust_chain", "sign_jwt",
           "sign_statement", "thumbprint", "unverified_claims", "verify_jwt"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an RSA key: the key id the SPID/CIE examples use."""
    canonical = json.dumps({"e": public["e"], "kty": "RSA", "n": public["n"]}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@functools.lru_cache(maxsize=64)
def private_key(private_pem: str) -> rsa.RSAPrivateKey:
    """The loaded RSA key (cached: loading checks the key, which costs more than a signature)."""
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("federation keys are RSA")
    return key


@functools.lru_cache(maxsize=64)
def _public_jwk(private_pem: str) -> tuple[tuple[str, str], ...]:
    public = jwk.construct(private_key(private_pem).public_key(), "RS256").to_dict()
    key = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items() if k in ("kty", "n", "e")}
    key["kid"] = thumbprint(key)
    return tuple(key.items())


def public_jwk(private_pem: str, use: str | None = None) -> dict[str, Any]:
    """The public JWK of an RSA private key, with its thumbprint as `kid`."""
    key: dict[str, Any] = dict(_public_jwk(private_pem))
    if use:
        key["use"] = use
    return key


def sign_jwt(claims: Mapping[str, Any], private_pem: str, *, typ: str | None = None,
             algorithm: str = "RS256") -> str:
    headers: dict[str, Any] = {"kid": public_jwk(private_pem)["kid"]}
    if typ:
        headers["typ"] = typ
    return str(jwt.encode(dict(claims), private_key(private_pem), algorithm=algorithm, headers=headers))


def sign_statement(claims: Mapping[str, Any], private_pem: str) -> str:
    return sign_jwt(claims, private_pem, typ=STATEMENT_TYP)


def verify_jwt(token: str, jwks: Mapping[str, Any], *, what: str, typ: str | None = None,
               audience: str | None = None, issuer: str | None = None, leeway: int = 60) -> dict[str, Any]:
    """Verify a JWS against a JWKS (by kid; RS256/RS512 only) and return its claims."""
    if len(token) > MAX_STATEMENT_BYTES:
        raise FederationError(f"{what} too large")
    try:
        header = jwt.get_unverified_header(token)
    except JWTError:
        raise FederationError(f"{what} is not a JWS") from None
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise FederationError(f"{what}: algorithm {header.get('alg')!r} not accepted")
    if typ is not None and header.get("typ") != typ:
        raise FederationError(f"{what}: typ must be {typ}")
    keys = {k.get("kid"): k for k in jwks.get("keys", []) if isinstance(k, Mapping)}
    key = keys.get(header.get("kid"))
    if key is None:
        raise FederationError(f"{what}: signed with a key the federation does not vouch for")
    try:
        return dict(jwt.decode(token, dict(key), algorithms=[header["alg"]], audience=audience, issuer=issuer,
                               options={"verify_aud": audience is not None, "leeway": leeway,
                                        "require_exp": True, "require_iat": True, "verify_at_hash": False}))
    except JWTError as exc:
        raise FederationError(f"{what}: {type(exc).__name__}") from None


def unverified_claims(token: str, what: str) -> dict[str, Any]:
    try:
        return dict(jwt.get_unverified_claims(token))
    except JWTError:
        raise FederationError(f"{what} is not a JWT") from None


# -- metadata policy (OIDC Federation 1.0, section 5.1; the operators the SPID/CIE examples use) --
def apply_policy(metadata: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(metadata))
    for claim, operators in policy.items():
        if not isinstance(operators, Mapping):
            raise FederationError(f"metadata policy for {claim!r} is not an object")
        if "value" in operators:
            result[claim] = copy.deepcopy(operators["value"])
        if "add" in operators:
            current = result.get(claim, [])
            current = current if isinstance(current, list) else [current]
            result[claim] = current + [v for v in operators["add"] if v not in current]
        if "default" in operators and claim not in result:
            result[claim] = copy.deepcopy(operators["default"])
        value = result.get(claim)
        if value is None:
            if operators.get("essential"):
                raise FederationError(f"metadata lacks the essential claim {claim!r}")
            continue
        if "one_of" in operators and value not in operators["one_of"]:
            raise FederationError(f"metadata {claim!r} is not one of the allowed values")
        if "subset_of" in operators:
            values = value if isinstance(value, list) else [value]
            result[claim] = [v for v in values if v in operators["subset_of"]]
            if not result[claim] and operators.get("essential"):
                raise FederationError(f"metadata {claim!r} has no allowed value")
        if "superset_of" in operators:
            values = value if isinstance(value, list) else [value]
            if not set(operators["superset_of"]) <= set(values):
                raise FederationError(f"metadata {claim!r} lacks required values")
    return result


@dataclass(frozen=True)
class TrustChain:
    """A resolved and verified chain: leaf Entity Configuration -> trust anchor's statement about it."""

    subject: str
    trust_anchor: str
    metadata: dict[str, Any]  # the leaf's metadata with the trust anchor's policy applied
    expires_at: int
    statements: tuple[str, ...]  # leaf EC, TA statement about the leaf, TA EC


def resolve_trust_chain(subject: str, trust_anchor: str, fetch: Callable[[str], str], *,
                        trust_anchor_jwks: Mapping[str, Any] | None = None, now: float | None = None
                        ) -> TrustChain:
    """Resolve `subject`'s chain to `trust_anchor` (directly subordinate, as CIE OPs and Comuni are).

    `trust_anchor_jwks` pins the anchor's keys (production: AgID's/the Ministry's published keys);
    without it the anchor's self-signed configuration fetched from its URL is trusted (sandbox).
    """
    moment = int(now if now is not None else time.time())
    leaf_token = fetch(subject.rstrip("/") + WELL_KNOWN)
    leaf_claims = unverified_claims(leaf_token, "entity configuration")
    if leaf_claims.get("iss") != subject or leaf_claims.get("sub") != subject:
        raise FederationError("entity configuration must be self-issued (iss == sub == entity id)")
    verify_jwt(leaf_token, leaf_claims.get("jwks") or {}, what="entity configuration", typ=STATEMENT_TYP)
    if trust_anchor not in (leaf_claims.get("authority_hints") or []):
        raise FederationError("the entity does not name our trust anchor among its authority_hints")

    anchor_token = fetch(trust_anchor.rstrip("/") + WELL_KNOWN)
    anchor_claims = unverified_claims(anchor_token, "trust anchor configuration")
    anchor_jwks = trust_anchor_jwks or anchor_claims.get("jwks") or {}
    anchor_claims = verify_jwt(anchor_token, anchor_jwks, what="trust anchor configuration", typ=STATEMENT_TYP)
    if anchor_claims.get("iss") != trust_anchor or anchor_claims.get("sub") != trust_anchor:
        raise FederationError("trust anchor configuration must be self-issued")
    fetch_endpoint = ((anchor_claims.get("metadata") or {}).get("federation_entity") or {}).get(
        "federation_fetch_endpoint")
    if not fetch_endpoint:
        raise FederationError("the trust anchor publishes no federation_fetch_endpoint")

    statement_token = fetch(f"{fetch_endpoint}?sub={quote(subject, safe='')}")
    statement = verify_jwt(statement_token, anchor_jwks, what="subordinate statement", typ=STATEMENT_TYP)
    if statement.get("iss") != trust_anchor or statement.get("sub") != subject:
        raise FederationError("the trust anchor's statement is about another entity")
    # the leaf's configuration must verify with the keys the anchor vouches for, not only its own
    leaf = verify_jwt(leaf_token, statement.get("jwks") or {}, what="entity configuration", typ=STATEMENT_TYP)
    metadata = dict(leaf.get("metadata") or {})
    for entity_type, policy in (statement.get("metadata_policy") or {}).items():
        if entity_type in metadata:
            metadata[entity_type] = apply_policy(metadata[entity_type], policy)
    expires = min(int(leaf["exp"]), int(statement["exp"]), int(anchor_claims["exp"]))
    if expires <= moment:
        raise FederationError("the trust chain has expired")
    return TrustChain(subject, trust_anchor, metadata, expires, (leaf_token, statement_token, anchor_token))
