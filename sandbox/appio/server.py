"""The App IO twin: a WSGI app (werkzeug) speaking IO's Services API, plus `/__admin` for tests.

Request handling order, as IO's API management does it: subscription key (401), rate limit
(429 + Retry-After), then injected faults, then contract validation (400 problem+json), then
the operation. Nothing here logs a fiscal code.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.appio import seed

KEY_HEADER = "Ocp-Apim-Subscription-Key"
FISCAL_CODE = re.compile(r"^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$")
NOTICE_NUMBER = re.compile(r"^[0123][0-9]{17}$")
ORG_FISCAL_CODE = re.compile(r"^[0-9]{11}$")
TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?(Z|[+-][0-9]{2}:[0-9]{2})$")
FAULT_KINDS = ("429", "500", "timeout", "malformed")
OPERATIONS = ("profile", "submit", "status")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID like IO's message ids: 48-bit milliseconds + 80 random bits, Crockford base32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def now_iso() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Invalid(Exception):
    pass


@dataclass
class Faults:
    """What to break: rates per kind (0..1), forced next faults, latency, for some operations."""

    rates: dict[str, float] = field(default_factory=dict)
    next: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    operations: tuple[str, ...] = OPERATIONS
    retry_after: float = 1.0
    timeout_seconds: float = 15.0
    seed: int | None = None
    fiscal_codes: frozenset[str] = frozenset()  # when given, only requests about these citizens fail

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        rates = {str(k): float(v) for k, v in (data.get("rates") or {}).items()}
        forced = [str(x) for x in data.get("next") or []]
        if not set(rates) <= set(FAULT_KINDS) or not set(forced) <= set(FAULT_KINDS):
            raise Invalid(f"fault kinds are {', '.join(FAULT_KINDS)}")
        operations = tuple(data.get("operations") or OPERATIONS)
        if not set(operations) <= set(OPERATIONS):
            raise Invalid(f"operations are {', '.join(OPERATIONS)}")
        return cls(rates=rates, next=forced, latency_ms=float(data.get("latency_ms", 0)), operations=operations,
                   retry_after=float(data.get("retry_after", 1.0)),
                   timeout_seconds=float(data.get("timeout_seconds", 15.0)), seed=data.get("seed"),
                   fiscal_codes=frozenset(str(x) for x in data.get("fiscal_codes") or []))

    def as_json(self) -> dict[str, Any]:
        return {"rates": self.rates, "next": self.next, "latency_ms": self.latency_ms,
                "operations": list(self.operations), "retry_after": self.retry_after,
                "timeout_seconds": self.timeout_seconds, "seed": self.seed,
                "fiscal_codes": sorted(self.fiscal_codes)}


@dataclass
class ServiceKey:
    service_id: str
    organization_fiscal_code: str
    label: str


@dataclass
class KeyStats:
    arrivals: deque[float] = field(default_factory=deque)
    requests: int = 0
    throttled: int = 0
    max_in_window: int = 0


class TwinState:
    """Everything the twin knows; one lock, held briefly (never while sleeping)."""

    def __init__(self, keys: dict[str, ServiceKey] | None = None, *, rate_limit: int | None = 150,
                 window_seconds: float = 5.0, processing_seconds: float = 1.0, accept_any_key: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = dict(keys or {})
        self.revoked: set[str] = set()
        self.accept_any_key = accept_any_key
        self.rate_limit = rate_limit
        self.window = window_seconds
        self.processing_seconds = processing_seconds
        self.clock = clock
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.faults = Faults()
        self.random = random.Random()  # noqa: S311 - fault injection, not security
        self.messages: dict[str, dict[str, Any]] = {}
        self.submitted: dict[str, int] = defaultdict(int)
        self.profile_lookups: dict[str, int] = defaultdict(int)
        self.status_lookups: dict[str, int] = defaultdict(int)
        self.stats: dict[str, KeyStats] = defaultdict(KeyStats)
        self.injected: dict[str, int] = defaultdict(int)

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self.random = random.Random(faults.seed)  # noqa: S311

    def key(self, value: str | None) -> ServiceKey | None:
        if not value or value in self.revoked:
            return None
        known = self.keys.get(value)
        if known is None and self.accept_any_key:
            digest = hashlib.sha256(value.encode()).hexdigest()[:8]
            return ServiceKey(service_id=f"01SANDBOXANY{digest.upper()}", organization_fiscal_code="00297960197",
                              label=f"any-{digest}")
        return known

    def admit(self, label: str) -> float | None:
        """Count an arrival for the key; seconds to wait when over the limit (None = admitted)."""
        with self.lock:
            stats = self.stats[label]
            now = self.clock()
            while stats.arrivals and stats.arrivals[0] <= now - self.window:
                stats.arrivals.popleft()
            stats.requests += 1
            stats.arrivals.append(now)
            stats.max_in_window = max(stats.max_in_window, len(stats.arrivals))
            if self.rate_limit is None or len(stats.arrivals) <= self.rate_limit:
                return None
            stats.throttled += 1
            return max(0.1, stats.arrivals[-self.rate_limit] + self.window - now)

    def draw_fault(self, operation: str, fiscal_code: str | None = None) -> str | None:
        with self.lock:
            faults = self.faults
            if operation not in faults.operations:
                return None
            if faults.fiscal_codes and fiscal_code not in faults.fiscal_codes:
                return None
            kind: str | None
            if faults.next:
                kind = faults.next.pop(0)
            else:
                kind = next((k for k in FAULT_KINDS if self.random.random() < faults.rates.get(k, 0.0)), None)
            if kind:
                self.injected[kind] += 1
            return kind


def _problem(status: int, title: str, detail: str) -> Response:
    body = {"type": "https://io.sandbox.sportello/problems/" + title.lower().replace(" ", "-"), "title": title,
            "status": status, "detail": detail}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def _check_fiscal_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 16 or not FISCAL_CODE.match(value):
        raise Invalid(f"{where}: not a valid fiscal code")
    return value


def _check_int(value: Any, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{where}: an integer between {low} and {high}")
    return value


def validate_new_message(body: Any, *, fiscal_code_in_body: bool) -> dict[str, Any]:
    """NewMessage of the contract (v4.1.1): the limits IO enforces, with readable reasons."""
    if not isinstance(body, dict):
        raise Invalid("body: a JSON object")
    if fiscal_code_in_body:
        _check_fiscal_code(body.get("fiscal_code"), "fiscal_code")
    elif "fiscal_code" in body:
        _check_fiscal_code(body["fiscal_code"], "fiscal_code")
    if "time_to_live" in body:
        _check_int(body["time_to_live"], 3600, 604800, "time_to_live")
    if body.get("feature_level_type", "STANDARD") not in ("STANDARD", "ADVANCED"):
        raise Invalid("feature_level_type: STANDARD or ADVANCED")
    content = body.get("content")
    if not isinstance(content, dict):
        raise Invalid("content: required object")
    subject, markdown = content.get("subject"), content.get("markdown")
    if not isinstance(subject, str) or not 10 <= len(subject) <= 120:
        raise Invalid("content.subject: 10 to 120 characters")
    if not isinstance(markdown, str) or not 80 <= len(markdown) <= 10000:
        raise Invalid("content.markdown: 80 to 10000 characters")
    if "require_secure_channels" in content and not isinstance(content["require_secure_channels"], bool):
        raise Invalid("content.require_secure_channels: boolean")
    if "due_date" in content and (not isinstance(content["due_date"], str) or not TIMESTAMP.match(content["due_date"])):
        raise Invalid("content.due_date: ISO-8601 UTC timestamp")
    payment = content.get("payment_data")
    if payment is not None:
        if not isinstance(payment, dict):
            raise Invalid("content.payment_data: object")
        _check_int(payment.get("amount"), 1, 9999999999, "content.payment_data.amount")
        if not isinstance(payment.get("notice_number"), str) or not NOTICE_NUMBER.match(payment["notice_number"]):
            raise Invalid("content.payment_data.notice_number: ^[0123][0-9]{17}$")
        if "invalid_after_due_date" in payment and not isinstance(payment["invalid_after_due_date"], bool):
            raise Invalid("content.payment_data.invalid_after_due_date: boolean")
        payee = payment.get("payee")
        if payee is not None and (not isinstance(payee, dict) or not isinstance(payee.get("fiscal_code"), str)
                                  or not ORG_FISCAL_CODE.match(payee["fiscal_code"])):
            raise Invalid("content.payment_data.payee.fiscal_code: 11 digits")
    return body


class IOTwin:
    """The WSGI application."""

    def __init__(self, state: TwinState, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.state = state
        self.sleep = sleep
        self.url_map = Map([
            Rule("/api/v1/profiles", methods=["POST"], endpoint="profile_by_post"),
            Rule("/api/v1/profiles/<fiscal_code>", methods=["GET"], endpoint="profile_by_path"),
            Rule("/api/v1/messages", methods=["POST"], endpoint="submit_in_body"),
            Rule("/api/v1/messages/<fiscal_code>", methods=["POST"], endpoint="submit_in_path"),
            Rule("/api/v1/messages/<fiscal_code>/<message_id>", methods=["GET"], endpoint="get_message"),
            Rule("/__admin/counts", methods=["GET"], endpoint="admin_counts"),
            Rule("/__admin/stats", methods=["GET"], endpoint="admin_stats"),
            Rule("/__admin/messages", methods=["GET"], endpoint="admin_messages"),
            Rule("/__admin/faults", methods=["GET", "POST"], endpoint="admin_faults"),
            Rule("/__admin/reset", methods=["POST"], endpoint="admin_reset"),
            Rule("/__admin/keys", methods=["POST"], endpoint="admin_keys"),
            Rule("/__admin/seed", methods=["GET"], endpoint="admin_seed"),
        ])

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            response = getattr(self, endpoint)(request, **args)
        except HTTPException as exc:
            response = _problem(exc.code or 500, exc.name, exc.description or exc.name)
        return response(environ, start_response)  # type: ignore[no-any-return]

    # -- the API ----------------------------------------------------------------------------
    def _guard(self, request: Request, operation: str,
               fiscal_code: str | None = None) -> tuple[ServiceKey | None, Response | None, str | None]:
        key = self.state.key(request.headers.get(KEY_HEADER))
        if key is None:
            return None, Response(status=401), None
        wait = self.state.admit(key.label)
        if wait is not None:
            return key, Response(status=429, headers={"Retry-After": str(max(1, round(wait + 0.49)))}), None
        fault = self.state.draw_fault(operation, fiscal_code)
        latency = self.state.faults.latency_ms
        if latency:
            self.sleep(latency / 1000)
        if fault == "429":
            return key, Response(status=429, headers={"Retry-After": f"{self.state.faults.retry_after:g}"}), None
        if fault == "500":
            return key, _problem(500, "Internal Server Error", "sandbox: injected failure"), None
        if fault == "timeout":
            self.sleep(self.state.faults.timeout_seconds)
            return key, _problem(504, "Gateway Timeout", "sandbox: injected timeout"), None
        return key, None, fault

    @staticmethod
    def _body(request: Request) -> Any:
        try:
            return json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            raise Invalid("body: not valid JSON") from None

    def _about(self, request: Request, path_fiscal_code: str | None) -> str | None:
        """Whom a request is about (for faults aimed at some citizens); None when unreadable."""
        if path_fiscal_code is not None:
            return path_fiscal_code
        try:
            body = self._body(request)
        except Invalid:
            return None
        value = body.get("fiscal_code") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    def _profile(self, request: Request, fiscal_code_source: Callable[[], Any],
                 path_fiscal_code: str | None = None) -> Response:
        _key, stop, fault = self._guard(request, "profile", self._about(request, path_fiscal_code))
        if stop is not None:
            return stop
        try:
            fiscal_code = _check_fiscal_code(fiscal_code_source(), "fiscal_code")
        except Invalid as exc:
            return _problem(400, "Invalid payload", str(exc))
        with self.state.lock:
            self.state.profile_lookups[fiscal_code] += 1
        if fault == "malformed":
            return Response('{"sender_allowed": "maybe"', status=200, mimetype="application/json")
        profile = seed.profile_for(fiscal_code)
        if profile is None:
            return _problem(404, "Profile not found", "no user found for the provided fiscal code")
        return _json(profile)

    def profile_by_post(self, request: Request) -> Response:
        def source() -> Any:
            body = self._body(request)
            return body.get("fiscal_code") if isinstance(body, dict) else None
        return self._profile(request, source)

    def profile_by_path(self, request: Request, fiscal_code: str) -> Response:
        return self._profile(request, lambda: fiscal_code, fiscal_code)

    def _submit(self, request: Request, path_fiscal_code: str | None) -> Response:
        key, stop, fault = self._guard(request, "submit", self._about(request, path_fiscal_code))
        if stop is not None:
            return stop
        assert key is not None
        try:
            body = validate_new_message(self._body(request), fiscal_code_in_body=path_fiscal_code is None)
            fiscal_code = path_fiscal_code or body["fiscal_code"]
            _check_fiscal_code(fiscal_code, "fiscal_code")
        except Invalid as exc:
            return _problem(400, "Invalid payload", str(exc))
        content = dict(body["content"])
        if "payment_data" in content:
            payment = {"invalid_after_due_date": False, **content["payment_data"]}
            payment.setdefault("payee", {"fiscal_code": key.organization_fiscal_code})
            content["payment_data"] = payment
        message_id = new_ulid()
        with self.state.lock:
            self.state.messages[message_id] = {
                "id": message_id, "fiscal_code": fiscal_code, "time_to_live": body.get("time_to_live", 3600),
                "created_at": now_iso(), "content": content, "sender_service_id": key.service_id,
                "feature_level_type": body.get("feature_level_type", "STANDARD"), "_created": self.state.clock(),
            }
            self.state.submitted[fiscal_code] += 1
        location = f"/api/v1/messages/{fiscal_code}/{message_id}"
        if fault == "malformed":  # created, but the answer is unreadable: the sender is in doubt
            return Response('{"id": ', status=201, mimetype="application/json", headers={"Location": location})
        return _json({"id": message_id}, 201, headers={"Location": location})

    def submit_in_body(self, request: Request) -> Response:
        return self._submit(request, None)

    def submit_in_path(self, request: Request, fiscal_code: str) -> Response:
        try:
            _check_fiscal_code(fiscal_code, "fiscal_code")
        except Invalid as exc:
            return _problem(400, "Invalid payload", str(exc))
        return self._submit(request, fiscal_code)

    def get_message(self, request: Request, fiscal_code: str, message_id: str) -> Response:
        key, stop, fault = self._guard(request, "status", fiscal_code)
        if stop is not None:
            return stop
        assert key is not None
        with self.state.lock:
            self.state.status_lookups[fiscal_code] += 1
            stored = self.state.messages.get(message_id)
        if stored is None or stored["fiscal_code"] != fiscal_code or stored["sender_service_id"] != key.service_id:
            return _problem(404, "Message not found", "no message found for the provided ID")
        if fault == "malformed":
            return Response("<html>oops</html>", status=200, mimetype="text/html")
        done = self.state.clock() - stored["_created"] >= self.state.processing_seconds
        message = {k: v for k, v in stored.items() if not k.startswith("_")}
        return _json({"message": message, "status": "PROCESSED" if done else "ACCEPTED",
                      "notification": {"email": "SENT"} if done else {}})

    # -- admin (not part of IO's contract) ---------------------------------------------------
    def admin_counts(self, request: Request) -> Response:
        with self.state.lock:
            return _json({"messages": dict(self.state.submitted), "profiles": dict(self.state.profile_lookups),
                          "status": dict(self.state.status_lookups), "injected": dict(self.state.injected)})

    def admin_stats(self, request: Request) -> Response:
        with self.state.lock:
            keys = {label: {"requests": s.requests, "throttled": s.throttled, "max_in_window": s.max_in_window}
                    for label, s in self.state.stats.items()}
        return _json({"limit": self.state.rate_limit, "window_seconds": self.state.window, "keys": keys})

    def admin_messages(self, request: Request) -> Response:
        wanted = request.args.get("fiscal_code")
        with self.state.lock:
            found = [{k: v for k, v in m.items() if not k.startswith("_")} for m in self.state.messages.values()
                     if wanted is None or m["fiscal_code"] == wanted]
        return _json(found)

    def admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.set_faults(Faults.from_json(self._body(request) or {}))
            except (Invalid, TypeError, ValueError) as exc:
                return _problem(400, "Invalid faults", str(exc))
        return _json(self.state.faults.as_json())

    def admin_reset(self, request: Request) -> Response:
        with self.state.lock:
            self.state.reset()
        return _json({"reset": True})

    def admin_keys(self, request: Request) -> Response:
        body = self._body(request) or {}
        with self.state.lock:
            for value in body.get("revoke", []):
                self.state.revoked.add(str(value))
            for value in body.get("restore", []):
                self.state.revoked.discard(str(value))
        return _json({"revoked": len(self.state.revoked)})

    def admin_seed(self, request: Request) -> Response:
        return _json({"not_on_io": seed.NOT_ON_IO, "not_allowed": seed.NOT_ALLOWED, "english": seed.ENGLISH,
                      "on_io": seed.ON_IO})


def keys_from_tenants() -> dict[str, ServiceKey]:
    """The IO services and keys of the tenants this installation runs (so the twin knows them)."""
    tenants_dir = os.environ.get("SPORTELLO_TENANTS_DIR")
    if not tenants_dir:
        return {}
    from pathlib import Path

    from sportello.tenants import SecretSource, load_tenants

    secrets_dir = os.environ.get("SPORTELLO_SECRETS_DIR")
    registry = load_tenants(Path(tenants_dir), SecretSource(secrets_dir=Path(secrets_dir) if secrets_dir else None))
    keys: dict[str, ServiceKey] = {}
    for tenant in registry:
        if tenant.appio is None:
            continue
        for service in tenant.appio.services:
            label = f"{tenant.id}/{service.name}"
            keys[service.primary_key.get_secret_value()] = ServiceKey(service.service_id, tenant.fiscal_code,
                                                                      f"{label}#primary")
            if service.secondary_key is not None:
                keys[service.secondary_key.get_secret_value()] = ServiceKey(service.service_id, tenant.fiscal_code,
                                                                            f"{label}#secondary")
    return keys


def state_from_env() -> TwinState:
    """APPIO_TWIN_RATE_LIMIT ("150/5", or "off"), APPIO_TWIN_PROCESSING_SECONDS, APPIO_TWIN_ACCEPT_ANY_KEY,
    APPIO_TWIN_FAULTS (JSON as for POST /__admin/faults)."""
    limit_spec = os.environ.get("APPIO_TWIN_RATE_LIMIT", "150/5")
    limit: int | None
    if limit_spec == "off":
        limit, window = None, 5.0
    else:
        count, _, seconds = limit_spec.partition("/")
        limit, window = int(count), float(seconds or 5)
    state = TwinState(keys_from_tenants(), rate_limit=limit, window_seconds=window,
                      processing_seconds=float(os.environ.get("APPIO_TWIN_PROCESSING_SECONDS", "1")),
                      accept_any_key=os.environ.get("APPIO_TWIN_ACCEPT_ANY_KEY", "") == "1")
    if os.environ.get("APPIO_TWIN_FAULTS"):
        state.set_faults(Faults.from_json(json.loads(os.environ["APPIO_TWIN_FAULTS"])))
    return state
