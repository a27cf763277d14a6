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
from dataclasses import dataclass, field
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
__all__ = ["FederationError", "TrustChain", "apply_policy", "merge_policies", "public_jwk", "resolve_trust_chain",
           "sign_jwt", "sign_statement", "thumbprint", "unverified_claims", "verify_jwt"]


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
               audience: str | None = None, issuer: str | None = None, leeway: int = 60,
               require_exp: bool = True, require_iat: bool = True) -> dict[str, Any]:
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
                                        "require_exp": require_exp, "require_iat": require_iat,
                                        "verify_at_hash": False}))
    except JWTError as exc:
        raise FederationError(f"{what}: {type(exc).__name__}") from None


def unverified_claims(token: str, what: str) -> dict[str, Any]:
    try:
        return dict(jwt.get_unverified_claims(token))
    except JWTError:
        raise FederationError(f"{what} is not a JWT") from None


# -- metadata policy (OpenID Federation 1.0, section 6.1; the operators the SPID/CIE examples use) --
_OPERATORS = frozenset({"value", "add", "default", "one_of", "subset_of", "superset_of", "essential"})


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def merge_policies(superior: Mapping[str, Any], subordinate: Mapping[str, Any]) -> dict[str, Any]:
    """Combine a superior's policy with a subordinate's (section 6.1.3): a subordinate may only tighten.

    Why: in a chain TA -> intermediate -> leaf every superior's policy holds; an intermediate cannot
    loosen what the anchor imposes, so a conflict means the chain is not valid.
    """
    merged: dict[str, Any] = {claim: dict(ops) for claim, ops in superior.items() if isinstance(ops, Mapping)}
    for claim, operators in subordinate.items():
        if not isinstance(operators, Mapping):
            raise FederationError(f"metadata policy for {claim!r} is not an object")
        unknown = set(operators) - _OPERATORS
        if unknown:
            raise FederationError(f"metadata policy for {claim!r} uses unknown operators {sorted(unknown)}")
        mine = merged.setdefault(claim, {})
        for name, value in operators.items():
            if name not in mine:
                mine[name] = copy.deepcopy(value)
            elif name in ("value", "default"):
                if mine[name] != value:
                    raise FederationError(f"metadata policies conflict on {claim!r} ({name})")
            elif name == "add":
                mine[name] = _as_list(mine[name]) + [v for v in _as_list(value) if v not in _as_list(mine[name])]
            elif name in ("one_of", "subset_of"):
                mine[name] = [v for v in _as_list(mine[name]) if v in _as_list(value)]
                if not mine[name]:
                    raise FederationError(f"metadata policies on {claim!r} leave no allowed value ({name})")
            elif name == "superset_of":
                mine[name] = _as_list(mine[name]) + [v for v in _as_list(value) if v not in _as_list(mine[name])]
            elif name == "essential":
                mine[name] = bool(mine[name]) or bool(value)
        if "value" in mine and "subset_of" in mine and not set(_as_list(mine["value"])) <= set(mine["subset_of"]):
            raise FederationError(f"metadata policies conflict on {claim!r} (value outside subset_of)")
        if "value" in mine and "one_of" in mine and mine["value"] not in mine["one_of"]:
            raise FederationError(f"metadata policies conflict on {claim!r} (value outside one_of)")
        if "superset_of" in mine and "subset_of" in mine and not set(mine["superset_of"]) <= set(mine["subset_of"]):
            raise FederationError(f"metadata policies conflict on {claim!r} (superset_of outside subset_of)")
    return merged


def apply_policy(metadata: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a (combined) metadata policy to an entity's metadata; a violation is a FederationError."""
    result = copy.deepcopy(dict(metadata))
    for claim, operators in policy.items():
        if not isinstance(operators, Mapping):
            raise FederationError(f"metadata policy for {claim!r} is not an object")
        if "value" in operators:
            if operators["value"] is None:
                result.pop(claim, None)
            else:
                result[claim] = copy.deepcopy(operators["value"])
        if "add" in operators:
            current = _as_list(result[claim]) if claim in result else []
            result[claim] = current + [v for v in _as_list(operators["add"]) if v not in current]
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
            result[claim] = [v for v in _as_list(value) if v in operators["subset_of"]]
            if not result[claim]:
                if operators.get("essential"):
                    raise FederationError(f"metadata {claim!r} has no allowed value")
                del result[claim]
        if "superset_of" in operators:
            if not set(operators["superset_of"]) <= set(_as_list(result.get(claim, []))):
                raise FederationError(f"metadata {claim!r} lacks required values")
    return result


# -- trust chains (OpenID Federation 1.0, sections 10 and 7; the SPID/CIE rules' profile) -----------
MAX_INTERMEDIATES = 3  # the Italian federation has at most one (Soggetti Aggregatori); a bound stops loops
MAX_AUTHORITY_HINTS = 5
TRUST_MARK_TYP = "trust-mark+jwt"


@dataclass(frozen=True)
class TrustChain:
    """A resolved and verified chain: leaf Entity Configuration -> superiors' statements -> trust anchor.

    `statements` is the chain as the `/resolve` endpoint would give it: the leaf's configuration,
    each superior's subordinate statement (immediate superior first), the anchor's configuration.
    """

    subject: str
    trust_anchor: str
    metadata: dict[str, Any]  # the leaf's metadata with the combined policy of every superior applied
    expires_at: int  # the earliest exp in the chain
    statements: tuple[str, ...]
    jwks: dict[str, Any] = field(default_factory=dict)  # the leaf's federation keys as its superior vouches
    trust_marks: tuple[str, ...] = ()  # ids of the leaf's trust marks that were verified
    authorities: tuple[str, ...] = ()  # the intermediates between the leaf and the anchor, nearest first

    def resolve_response(self) -> dict[str, Any]:
        """The claims of a resolve answer (the rules' example EN 4.1) for this chain."""
        return {"iss": self.trust_anchor, "sub": self.subject, "exp": self.expires_at, "metadata": self.metadata,
                "trust_marks": [{"id": i} for i in self.trust_marks], "trust_chain": list(self.statements)}


def _self_signed(token: str, entity: str, what: str) -> dict[str, Any]:
    claims = unverified_claims(token, what)
    if claims.get("iss") != entity or claims.get("sub") != entity:
        raise FederationError(f"{what} must be self-issued (iss == sub == entity id)")
    return verify_jwt(token, claims.get("jwks") or {}, what=what, typ=STATEMENT_TYP)


def _fetch_endpoint(claims: Mapping[str, Any], entity: str) -> str:
    endpoint = ((claims.get("metadata") or {}).get("federation_entity") or {}).get("federation_fetch_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise FederationError(f"the authority {entity} publishes no federation_fetch_endpoint")
    return endpoint


class _Resolver:
    """One resolution: fetches, verifies every hop, remembers why each path failed."""

    def __init__(self, trust_anchor: str, fetch: Callable[[str], str], anchor_token: str,
                 anchor: dict[str, Any], anchor_jwks: Mapping[str, Any], max_intermediates: int) -> None:
        self.trust_anchor = trust_anchor
        self.fetch = fetch
        self.anchor_token = anchor_token
        self.anchor = anchor
        self.anchor_jwks = anchor_jwks
        self.max_intermediates = max_intermediates
        self.failures: list[str] = []

    def climb(self, entity: str, token: str, claims: Mapping[str, Any], visited: frozenset[str],
              ) -> list[tuple[str, dict[str, Any]]]:
        """The subordinate statements from `entity` up to the anchor (immediate superior first)."""
        hints = claims.get("authority_hints") or []
        if not isinstance(hints, list) or not hints:
            raise FederationError(f"{entity} names no authority_hints")
        for hint in [str(h).rstrip("/") for h in hints[:MAX_AUTHORITY_HINTS]]:
            if hint in visited:
                continue
            try:
                return self._through(entity, token, hint, visited)
            except FederationError as exc:
                self.failures.append(f"via {hint}: {exc.detail}")
        raise FederationError(f"no trust chain from {entity} reaches the trust anchor")

    def _through(self, entity: str, token: str, superior: str, visited: frozenset[str],
                 ) -> list[tuple[str, dict[str, Any]]]:
        is_anchor = superior == self.trust_anchor
        if is_anchor:
            superior_token, superior_claims, superior_jwks = self.anchor_token, self.anchor, self.anchor_jwks
        else:
            if len(visited) > self.max_intermediates:
                raise FederationError("the chain is longer than the federation allows")
            superior_token = self.fetch(superior + WELL_KNOWN)
            superior_claims = _self_signed(superior_token, superior, "intermediate entity configuration")
            superior_jwks = superior_claims.get("jwks") or {}
        endpoint = _fetch_endpoint(superior_claims, superior)
        statement_token = self.fetch(f"{endpoint}{'&' if '?' in endpoint else '?'}sub={quote(entity, safe='')}")
        statement = verify_jwt(statement_token, superior_jwks, what=f"subordinate statement by {superior}",
                               typ=STATEMENT_TYP)
        if statement.get("iss") != superior or statement.get("sub") != entity:
            raise FederationError(f"the statement by {superior} is about another entity")
        # the subordinate's configuration must verify with the keys its superior vouches for
        verify_jwt(token, statement.get("jwks") or {}, what=f"entity configuration of {entity}", typ=STATEMENT_TYP)
        if is_anchor:
            return [(statement_token, statement)]
        return [(statement_token, statement),
                *self.climb(superior, superior_token, superior_claims, visited | {superior})]


def _check_constraints(path: list[dict[str, Any]], anchor: Mapping[str, Any]) -> None:
    """`max_path_length` of every superior (and of the anchor's configuration, as the Italian TA sets it)."""
    for index, statement in enumerate(path):
        limit = (statement.get("constraints") or {}).get("max_path_length")
        if isinstance(limit, int) and index > limit:
            raise FederationError(f"{statement.get('iss')} allows at most {limit} intermediates below it")
    limit = (anchor.get("constraints") or {}).get("max_path_length")
    if isinstance(limit, int) and len(path) - 1 > limit:
        raise FederationError(f"the trust anchor allows at most {limit} intermediates")


def _verified_trust_marks(leaf: Mapping[str, Any], subject: str, trust_anchor: str, anchor: Mapping[str, Any],
                          anchor_jwks: Mapping[str, Any], issuer_keys: Callable[[str], Mapping[str, Any]],
                          moment: int) -> tuple[str, ...]:
    """Ids of the leaf's trust marks that verify: issued by the anchor or an issuer it lists, about the leaf."""
    issuers: Mapping[str, Any] = anchor.get("trust_mark_issuers") or {}
    valid: list[str] = []
    for entry in leaf.get("trust_marks") or []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("trust_mark"), str):
            continue
        token = str(entry["trust_mark"])
        try:
            claims = unverified_claims(token, "trust mark")
            mark_id = str(claims.get("id") or claims.get("trust_mark_id") or "")
            issuer = str(claims.get("iss", "")).rstrip("/")
            if not mark_id or mark_id != entry.get("id") or claims.get("sub") != subject:
                raise FederationError("trust mark is about another entity or id")
            allowed = issuers.get(mark_id) if isinstance(issuers, Mapping) else None
            if issuer != trust_anchor and not (allowed and issuer in [str(a).rstrip("/") for a in allowed]):
                raise FederationError("trust mark issuer is not accredited by the trust anchor")
            keys = anchor_jwks if issuer == trust_anchor else issuer_keys(issuer)
            header = jwt.get_unverified_header(token)
            if header.get("typ") not in (None, TRUST_MARK_TYP):
                raise FederationError("trust mark has a wrong typ")
            verified = verify_jwt(token, keys, what="trust mark", require_exp=False)
            if "exp" in verified and int(verified["exp"]) <= moment:
                raise FederationError("trust mark expired")
        except (FederationError, JWTError):
            continue
        valid.append(str(mark_id))
    return tuple(valid)


def resolve_trust_chain(subject: str, trust_anchor: str, fetch: Callable[[str], str], *,
                        trust_anchor_jwks: Mapping[str, Any] | None = None, now: float | None = None,
                        required_trust_marks: tuple[str, ...] = (), allow_discovery: bool = False,
                        max_intermediates: int = MAX_INTERMEDIATES) -> TrustChain:
    """Resolve `subject`'s chain to `trust_anchor` through its authority_hints (intermediates included).

    Every hop is verified: each configuration is self-signed and also verifies with the keys its
    superior's statement vouches for; each statement is signed by its issuer's keys; the anchor's
    keys are the pinned `trust_anchor_jwks` (production: the federation's published keys). Only
    with `allow_discovery` (sandbox/dev) is the anchor's self-signed configuration trusted as fetched.
    The superiors' metadata policies are combined from the anchor down and applied to the leaf's
    metadata; the chain expires at its earliest `exp`; `required_trust_marks` must be present and valid.
    """
    subject, trust_anchor = subject.rstrip("/"), trust_anchor.rstrip("/")
    moment = int(now if now is not None else time.time())
    if trust_anchor_jwks is None and not allow_discovery:
        raise FederationError("the trust anchor's keys are not pinned (trust_anchor_jwks)")
    leaf_token = fetch(subject + WELL_KNOWN)
    leaf = _self_signed(leaf_token, subject, "entity configuration")

    anchor_token = fetch(trust_anchor + WELL_KNOWN)
    anchor_unverified = unverified_claims(anchor_token, "trust anchor configuration")
    anchor_jwks = dict(trust_anchor_jwks) if trust_anchor_jwks is not None else (anchor_unverified.get("jwks") or {})
    anchor = verify_jwt(anchor_token, anchor_jwks, what="trust anchor configuration", typ=STATEMENT_TYP)
    if anchor.get("iss") != trust_anchor or anchor.get("sub") != trust_anchor:
        raise FederationError("trust anchor configuration must be self-issued")

    resolver = _Resolver(trust_anchor, fetch, anchor_token, anchor, anchor_jwks, max_intermediates)
    try:
        path = resolver.climb(subject, leaf_token, leaf, frozenset({subject}))
    except FederationError as exc:
        reason = "; ".join(resolver.failures[-3:])
        raise FederationError(f"{exc.detail}" + (f" ({reason})" if reason else "")) from None
    statements = [claims for _, claims in path]
    _check_constraints(statements, anchor)

    combined: dict[str, dict[str, Any]] = {}
    for statement in reversed(statements):  # the anchor's policy first, then each intermediate's
        for entity_type, policy in (statement.get("metadata_policy") or {}).items():
            if not isinstance(policy, Mapping):
                raise FederationError(f"metadata policy for {entity_type!r} is not an object")
            combined[entity_type] = merge_policies(combined.get(entity_type, {}), policy)
    metadata = copy.deepcopy(dict(leaf.get("metadata") or {}))
    for entity_type, override in (statements[0].get("metadata") or {}).items():  # the immediate superior's
        if isinstance(override, Mapping):
            metadata[entity_type] = {**metadata.get(entity_type, {}), **copy.deepcopy(dict(override))}
    for entity_type, policy in combined.items():
        if entity_type in metadata:
            metadata[entity_type] = apply_policy(metadata[entity_type], policy)

    expires = min([int(leaf["exp"]), int(anchor["exp"])] + [int(s["exp"]) for s in statements])
    if expires <= moment:
        raise FederationError("the trust chain has expired")

    def issuer_keys(issuer: str) -> Mapping[str, Any]:
        if max_intermediates <= 0:
            raise FederationError("trust mark issuer too far from the anchor")
        return resolve_trust_chain(issuer, trust_anchor, fetch, trust_anchor_jwks=anchor_jwks, now=moment,
                                   max_intermediates=max_intermediates - 1).jwks

    marks = _verified_trust_marks(leaf, subject, trust_anchor, anchor, anchor_jwks, issuer_keys, moment)
    missing = [m for m in required_trust_marks if m not in marks]
    if missing:
        raise FederationError(f"the entity lacks a valid trust mark {missing[0]}")
    return TrustChain(subject, trust_anchor, metadata, expires,
                      (leaf_token, *(token for token, _ in path), anchor_token),
                      jwks=dict(statements[0].get("jwks") or {}), trust_marks=marks,
                      authorities=tuple(str(s["iss"]) for s in statements[:-1]))
