"""The PDND authorization-server twin: validates client assertions exactly as the contract says.

Checks (README section 4, specs/pdnd): form-encoded body with `grant_type=client_credentials`, the
jwt-bearer assertion type and, if sent, `client_id` = the assertion's `iss`; JOSE header with exactly
`kid`, `alg`, `typ`, `alg` = RS256 and `typ` = JWT; claims `iss` = `sub` = a known client, `aud` =
this server's client-assertion audience, `jti` (unique), numeric `iat`/`exp` (not expired, short),
`purposeId` of that client, an optional well-formed `digest`, and no `nbf` nor anything else; a
`kid` the client registered and a valid RS256 signature. Malformed assertions get 400, failed
authentication 401, too many requests 429 (problem+json, as the real one). Vouchers are RS256
`at+jwt` with the e-service audience; the keys are at `/.well-known/jwks.json`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws, jwt
from jose.exceptions import JOSEError
from werkzeug.wrappers import Request, Response

from sandbox.pdnd.catalogue import ESERVICES, PRODUCER_ID, CatalogueEntry
from sandbox.pdnd.faults import Faults
from sportello.ratelimit import SlidingWindowLimiter
from sportello.tenants import TenantRegistry

AUDIENCE = "auth.sandbox.interop.pagopa.it/client-assertion"
ISSUER = "sandbox.interop.pagopa.it"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
HEADER_FIELDS = {"kid", "alg", "typ"}
REQUIRED_CLAIMS = {"iss", "sub", "aud", "jti", "iat", "exp", "purposeId"}
ALLOWED_CLAIMS = REQUIRED_CLAIMS | {"digest"}
MAX_ASSERTION_LIFETIME = 24 * 3600  # generous, as PDND; what matters is not expired
LEEWAY = 5
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class Rejected(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Client:
    client_id: str
    consumer_id: str
    keys: dict[str, str]  # kid -> public PEM
    purposes: dict[str, str]  # purposeId -> e-service code


@dataclass
class PdndAuthority:
    """The validation and issuing rules, independent of HTTP."""

    clients: dict[str, Client]
    audience: str = AUDIENCE
    signing_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    clock: Any = time.time
    seen_jti: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pem = self.signing_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()).decode()
        public = jwk.construct(self._pem, "RS256").public_key()
        self.kid = "sandbox-pdnd-" + uuid.uuid5(uuid.NAMESPACE_URL, public.to_pem().decode()).hex[:12]
        self._jwk = {**{k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.to_dict().items()},
                     "kid": self.kid, "use": "sig", "alg": "RS256"}
        self._lock = threading.Lock()

    @classmethod
    def from_tenants(cls, tenants: TenantRegistry, **kwargs: Any) -> PdndAuthority:
        clients = {}
        for tenant in tenants:
            if tenant.pdnd is None:
                continue
            private = jwk.construct(tenant.pdnd.private_key.get_secret_value(), "RS256")
            clients[tenant.pdnd.client_id] = Client(
                tenant.pdnd.client_id, str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant.fiscal_code)),
                {tenant.pdnd.key_id: private.public_key().to_pem().decode()},
                {purpose: code for code, purpose in tenant.pdnd.purposes.items()})
        return cls(clients, **kwargs)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jwk]}

    def validate(self, form: dict[str, str]) -> tuple[Client, CatalogueEntry, dict[str, Any]]:
        if form.get("grant_type") != "client_credentials":
            raise Rejected(400, "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise Rejected(400, "client_assertion_type must be " + ASSERTION_TYPE)
        assertion = form.get("client_assertion") or ""
        try:
            header = jws.get_unverified_header(assertion)
            claims = jwt.get_unverified_claims(assertion)
        except JOSEError:
            raise Rejected(400, "client_assertion is not a compact JWS") from None
        if set(header) != HEADER_FIELDS:
            raise Rejected(400, f"client assertion header must have exactly kid, alg, typ (got {sorted(header)})")
        if header["alg"] != "RS256":
            raise Rejected(400, "client assertion alg must be RS256")
        if header["typ"] != "JWT":
            raise Rejected(400, "client assertion typ must be JWT")
        if "nbf" in claims:
            raise Rejected(400, "client assertion must not contain nbf")
        missing = REQUIRED_CLAIMS - set(claims)
        if missing:
            raise Rejected(400, f"client assertion misses {', '.join(sorted(missing))}")
        extra = set(claims) - ALLOWED_CLAIMS
        if extra:
            raise Rejected(400, f"client assertion has unexpected claims {', '.join(sorted(extra))}")
        if not all(isinstance(claims[c], int) for c in ("iat", "exp")):
            raise Rejected(400, "iat and exp must be numeric")
        if "digest" in claims:
            digest = claims["digest"]
            if (not isinstance(digest, dict) or set(digest) != {"alg", "value"} or digest["alg"] != "SHA256"
                    or not HEX64.match(str(digest["value"]))):
                raise Rejected(400, "digest must be {alg: SHA256, value: 64 hex characters}")
        if claims["iss"] != claims["sub"]:
            raise Rejected(400, "iss and sub must both be the client id")
        if form.get("client_id") and form["client_id"] != claims["iss"]:
            raise Rejected(400, "client_id differs from the assertion's iss")
        client = self.clients.get(str(claims["iss"]))
        if client is None:
            raise Rejected(401, "unknown client")
        public = client.keys.get(str(header["kid"]))
        if public is None:
            raise Rejected(401, "kid not registered for this client")
        try:
            jws.verify(assertion, public, algorithms=["RS256"])
        except JOSEError:
            raise Rejected(401, "client assertion signature is invalid") from None
        aud = claims["aud"]
        if aud != self.audience and not (isinstance(aud, list) and self.audience in aud):
            raise Rejected(401, f"client assertion aud must be {self.audience}")
        now = self.clock()
        if claims["exp"] <= now:
            raise Rejected(401, "client assertion expired")
        if claims["iat"] > now + LEEWAY or claims["exp"] - claims["iat"] > MAX_ASSERTION_LIFETIME:
            raise Rejected(401, "client assertion iat/exp out of range")
        code = client.purposes.get(str(claims["purposeId"]))
        if code is None or code not in ESERVICES:
            raise Rejected(401, "purposeId not found or not active for this client")
        with self._lock:
            self.seen_jti = {j: exp for j, exp in self.seen_jti.items() if exp > now}
            if claims["jti"] in self.seen_jti:
                raise Rejected(401, "client assertion jti already used")
            self.seen_jti[str(claims["jti"])] = float(claims["exp"])
        return client, ESERVICES[code], claims

    def issue(self, client: Client, entry: CatalogueEntry, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(self.clock())
        voucher = {
            "iss": ISSUER, "aud": entry.audience, "sub": client.client_id, "client_id": client.client_id,
            "purposeId": claims["purposeId"], "producerId": PRODUCER_ID, "consumerId": client.consumer_id,
            "eserviceId": entry.eservice_id, "descriptorId": entry.descriptor_id,
            "iat": now, "nbf": now, "exp": now + entry.voucher_lifetime, "jti": str(uuid.uuid4()),
        }
        if "digest" in claims:
            voucher["digest"] = claims["digest"]
        token = jwt.encode(voucher, self._pem, algorithm="RS256", headers={"kid": self.kid, "typ": "at+jwt"})
        return {"access_token": token, "token_type": "Bearer", "expires_in": entry.voucher_lifetime}


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail,
            "correlationId": str(uuid.uuid4())}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json", headers=headers)


class PdndTwin:
    """WSGI app: `POST /token.oauth2`, `GET /status`, `GET /.well-known/jwks.json`, `/_faults`."""

    def __init__(self, authority: PdndAuthority, *, limit: int = 1000, window_seconds: float = 10.0) -> None:
        self.authority = authority
        self.faults = Faults()
        self.limit, self.window = limit, window_seconds
        self._limiter = SlidingWindowLimiter(limit, window_seconds)

    def _rate_headers(self, key: str) -> dict[str, str]:
        remaining = max(0, self.limit - self._limiter.in_window(key))
        return {"X-Rate-Limit-Limit": str(self.limit), "X-Rate-Limit-Remaining": str(remaining),
                "X-Rate-Limit-Interval": str(int(self.window * 1000))}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/_faults":
            return self.faults.control(request)
        if path == "/status" and request.method == "GET":
            return _problem(200, "OK", "Service is up")
        if path == "/.well-known/jwks.json" and request.method == "GET":
            return Response(json.dumps(self.authority.jwks()), mimetype="application/json")
        if path != "/token.oauth2":
            return _problem(404, "Not Found", "no such resource")
        if request.method != "POST":
            return _problem(405, "Method Not Allowed", "use POST")
        fault = self.faults.take()
        if fault:
            return Faults.respond(fault)
        if request.mimetype != "application/x-www-form-urlencoded":
            return _problem(400, "Bad Request", "the body must be application/x-www-form-urlencoded")
        form = {k: v for k, v in request.form.items()}
        key = form.get("client_id") or request.remote_addr or ""
        if self._limiter.in_window(key) >= self.limit:
            return _problem(429, "Too Many Requests", "rate limit exceeded",
                            {**self._rate_headers(key), "Retry-After": "1"})
        self._limiter.acquire(key)
        try:
            client, entry, claims = self.authority.validate(form)
        except Rejected as exc:
            title = "Bad Request" if exc.status == 400 else "Unauthorized"
            return _problem(exc.status, title, exc.detail)
        body = self.authority.issue(client, entry, claims)
        return Response(json.dumps(body), mimetype="application/json",
                        headers={"Cache-Control": "no-cache, no-store", **self._rate_headers(key)})
