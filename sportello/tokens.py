"""Gateway tokens: short-lived RS256 JWTs that say who is calling, for which Comune, with which roles.

Why: the gateway trusts only what `services/spid` vouches for. `spid` signs tokens with the
installation's current key (key id in the header); anyone holding the published JWKS can verify
them. Rotation: the previous key stays published (and accepted) until its tokens have expired.
Verification failures raise `Unauthenticated` with a reason, never the token.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sportello.errors import ConfigurationError, SportelloError

ISSUER = "urn:sportello:spid"
AUDIENCE = "urn:sportello:gateway"
ALGORITHM = "RS256"
Role = Literal["citizen", "operator", "admin"]


class Unauthenticated(SportelloError):
    code = "auth.unauthenticated"
    title = "Authentication required"


class Principal(BaseModel):
    """The verified caller."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = Field(description="the citizen's fiscal code (never logged)")
    tenant: str
    level: int = Field(ge=1, le=3, description="SPID/CIE level of the login")
    roles: tuple[Role, ...]
    token_id: str
    expires_at: int

    def has_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)


def key_id(public_pem: str) -> str:
    """A stable key id: the SHA-256 of the public key, shortened (so rotation changes it)."""
    return hashlib.sha256(public_pem.strip().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    private_pem: str

    @property
    def public_jwk(self) -> dict[str, Any]:
        key = jwk.construct(self.private_pem, ALGORITHM)
        public = key.public_key().to_dict()
        public_pem = key.public_key().to_pem().decode()
        return {**{k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items()},
                "kid": key_id(public_pem), "use": "sig", "alg": ALGORITHM}

    @property
    def kid(self) -> str:
        return str(self.public_jwk["kid"])


class TokenIssuer:
    def __init__(self, current: SigningKey, previous: SigningKey | None = None, *, lifetime_seconds: int = 900):
        if not 60 <= lifetime_seconds <= 3600:
            raise ConfigurationError("gateway token lifetime must be between 60 and 3600 seconds")
        self._current = current
        self._previous = previous
        self.lifetime = lifetime_seconds

    def issue(self, *, subject: str, tenant: str, level: int, roles: Iterable[Role], now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "tenant": tenant, "level": level,
            "roles": sorted(set(roles)), "iat": issued, "nbf": issued, "exp": issued + self.lifetime,
            "jti": str(uuid.uuid4()),
        }
        return str(jwt.encode(claims, self._current.private_pem, algorithm=ALGORITHM,
                              headers={"kid": self._current.kid}))

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = [self._current.public_jwk]
        if self._previous is not None:
            keys.append(self._previous.public_jwk)
        return {"keys": keys}


class TokenVerifier:
    """Verifies gateway tokens against a JWKS (the keys `spid` publishes)."""

    def __init__(self, jwks: Mapping[str, Any], *, leeway_seconds: int = 30) -> None:
        self._keys = {key["kid"]: key for key in jwks.get("keys", []) if key.get("kid")}
        if not self._keys:
            raise ConfigurationError("the JWKS holds no key with a key id")
        self._leeway = leeway_seconds

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise Unauthenticated("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated("token algorithm not accepted")
        key = self._keys.get(header.get("kid", ""))
        if key is None:
            raise Unauthenticated("token signed with an unknown key")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                                options={"leeway": self._leeway, "require_exp": True, "require_iat": True,
                                         "require_sub": True, "require_jti": True})
        except ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except JWTClaimsError as exc:
            raise Unauthenticated(f"token claims rejected ({type(exc).__name__})") from None
        except JWTError:
            raise Unauthenticated("token signature invalid") from None
        try:
            return Principal(subject=claims["sub"], tenant=claims["tenant"], level=claims["level"],
                             roles=tuple(claims["roles"]), token_id=claims["jti"], expires_at=claims["exp"])
        except (KeyError, ValidationError):
            raise Unauthenticated("token claims incomplete") from None
