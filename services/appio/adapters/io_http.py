"""The real adapter to App IO's Services API (`../shared/specs/appio/index.yaml`, Swagger 2.0).

- The citizen's fiscal code travels in the body (getProfileByPOST, submitMessageforUserWithFiscalCodeInBody),
  never in a URL, except in getMessage where the contract has only the path form.
- Header `Ocp-Apim-Subscription-Key`; each IO service has a primary and an optional secondary key:
  a 401/403 with the primary is retried once with the secondary (key rotation), and the
  secondary is then preferred for a while.
- Every request waits its turn on the limiter (per key), counts against IO's window from before it
  leaves until its answer is back (docs/adr/0011), and a 429 pauses that key for its Retry-After.
  Every documented status becomes a typed error; anything else, or a body the contract does not
  allow, becomes `IOMalformedReply` — or `IOOutcomeUnknown` for a submission, since IO may have
  created the message (docs/adr/0007).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from services.appio.domain.errors import (
    IOApiError,
    IOBadRequest,
    IOMalformedReply,
    IONotFound,
    IOOutcomeUnknown,
    IOServerError,
    IOThrottled,
    IOUnauthorized,
    IOUnavailable,
)
from services.appio.domain.messages import MessageContent
from services.appio.ports import IOMessageStatus, Profile, ServiceKeys
from sportello.httpclient import metered_client
from sportello.ratelimit import CallLimiter, Ticket, parse_retry_after

logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry URLs (getMessage has the CF)
KEY_HEADER = "Ocp-Apim-Subscription-Key"
PREFER_SECONDARY_SECONDS = 600.0
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _Unlimited:
    def begin(self, key: str = "") -> Ticket:
        return Ticket(key, 0)

    def end(self, ticket: Ticket) -> None:
        return None

    def pause(self, key: str, seconds: float) -> None:
        return None


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}: {str(detail)[:300]}" if detail else f"HTTP {response.status_code}"


class IOServicesClient:
    """`IOServicesPort` over httpx. One instance per base URL; thread- and greenlet-safe."""

    def __init__(self, base_url: str, *, limiter: CallLimiter | None = None, timeout: float = 10.0,
                 connect_timeout: float = 5.0, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self._limiter: CallLimiter = limiter or _Unlimited()
        self._clock = clock
        self._prefer_secondary: dict[str, float] = {}
        self._http = metered_client(
            "appio", timeout=httpx.Timeout(timeout, connect=connect_timeout), transport=transport,
            headers={"Accept": "application/json", "User-Agent": "sportello-appio"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    # -- the three operations ----------------------------------------------------------------
    def get_profile(self, keys: ServiceKeys, fiscal_code: str) -> Profile:
        response = self._call(keys, "POST", "/profiles", json={"fiscal_code": fiscal_code}, idempotent=True)
        if response.status_code != 200:
            self._raise_for(response, not_found="citizen not on IO")
        body = self._json_object(response)
        allowed = body.get("sender_allowed")
        languages = body.get("preferred_languages", [])
        if not isinstance(allowed, bool) or not isinstance(languages, list) or not all(
                isinstance(x, str) for x in languages):
            raise IOMalformedReply("profile reply without a boolean sender_allowed or with bad languages")
        return Profile(sender_allowed=allowed, preferred_languages=tuple(languages))

    def submit_message(self, keys: ServiceKeys, fiscal_code: str, content: MessageContent, *,
                       before_send: Callable[[], None] | None = None) -> str:
        response = self._call(keys, "POST", "/messages", json=content.to_io(fiscal_code), idempotent=False,
                              before_send=before_send)
        if response.status_code == 201:
            try:
                body = response.json()
            except ValueError:
                body = None
            message_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(message_id, str) or not message_id.strip():
                raise IOOutcomeUnknown("IO answered 201 without a message id")
            return message_id
        if 200 <= response.status_code < 300:
            raise IOOutcomeUnknown(f"IO answered {response.status_code} instead of 201")
        self._raise_for(response, not_found="IO answered 404 to a submission")
        raise AssertionError("unreachable")

    def get_message(self, keys: ServiceKeys, fiscal_code: str, io_message_id: str) -> IOMessageStatus:
        path = f"/messages/{quote(fiscal_code, safe='')}/{quote(io_message_id, safe='')}"
        response = self._call(keys, "GET", path, idempotent=True)
        if response.status_code != 200:
            self._raise_for(response, not_found="no such message on IO")
        body = self._json_object(response)
        if not isinstance(body.get("message"), dict):
            raise IOMalformedReply("message reply without 'message'")
        status = body.get("status", "ACCEPTED")
        if not isinstance(status, str) or not status:
            raise IOMalformedReply("message reply with a non-string status")
        return IOMessageStatus(status=status)

    # -- plumbing ----------------------------------------------------------------------------
    def _call(self, keys: ServiceKeys, method: str, path: str, *, idempotent: bool, json: Any = None,
              before_send: Callable[[], None] | None = None) -> httpx.Response:
        slots = [("primary", keys.primary)] + ([("secondary", keys.secondary)] if keys.secondary else [])
        if len(slots) == 2 and self._prefer_secondary.get(keys.limiter_key, 0.0) > self._clock():
            slots.reverse()
        response: httpx.Response | None = None
        for index, (slot, key) in enumerate(slots):
            limiter_key = f"{keys.limiter_key}#{slot}"
            # the call counts against IO's window from before the intent is recorded until its answer
            # is back: IO's arrival is somewhere in between, so no window at IO can overfill (ADR 0011)
            ticket = self._limiter.begin(limiter_key)
            try:
                if before_send is not None and index == 0:
                    before_send()
                response = self._send(method, path, key, json=json, idempotent=idempotent)
            finally:
                self._limiter.end(ticket)
            if response.status_code == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._limiter.pause(limiter_key, retry_after)
                error = IOThrottled(f"429 on key {slot}; retry after {retry_after:.1f}s")
                error.retry_after = retry_after
                raise error
            if response.status_code in (401, 403) and index + 1 < len(slots):
                continue  # rotation: the other key may be the valid one now
            if slot == "secondary" and response.status_code not in (401, 403):
                self._prefer_secondary[keys.limiter_key] = self._clock() + PREFER_SECONDARY_SECONDS
            elif slot == "primary" and response.status_code not in (401, 403):
                self._prefer_secondary.pop(keys.limiter_key, None)
            return response
        assert response is not None
        return response

    def _send(self, method: str, path: str, key: str, *, json: Any, idempotent: bool) -> httpx.Response:
        try:
            return self._http.request(method, self.base_url + path, json=json, headers={KEY_HEADER: key})
        except NOT_SENT as exc:
            raise IOUnavailable(f"could not reach IO ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            if idempotent:
                raise IOUnavailable(f"no answer from IO ({type(exc).__name__})") from None
            raise IOOutcomeUnknown(f"submission sent, answer lost ({type(exc).__name__})") from None

    @staticmethod
    def _json_object(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise IOMalformedReply(f"HTTP {response.status_code} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise IOMalformedReply(f"HTTP {response.status_code} with a JSON body that is not an object")
        return body

    @staticmethod
    def _raise_for(response: httpx.Response, *, not_found: str) -> None:
        status = response.status_code
        error: IOApiError
        if status == 400:
            error = IOBadRequest(_problem_detail(response))
        elif status in (401, 403):
            error = IOUnauthorized(f"HTTP {status} with every key of the service")
        elif status == 404:
            error = IONotFound(not_found)
        elif status >= 500:
            error = IOServerError(_problem_detail(response))
        else:
            error = IOMalformedReply(f"unexpected HTTP {status}")
        error.status = status
        raise error


class IOClients:
    """`IOServicesPort` for many tenants: one client per base URL, all sharing one limiter."""

    def __init__(self, factory: Callable[[str], IOServicesClient]) -> None:
        self._factory = factory
        self._clients: dict[str, IOServicesClient] = {}

    def _for(self, keys: ServiceKeys) -> IOServicesClient:
        client = self._clients.get(keys.base_url)
        if client is None:
            client = self._clients[keys.base_url] = self._factory(keys.base_url)
        return client

    def get_profile(self, keys: ServiceKeys, fiscal_code: str) -> Profile:
        return self._for(keys).get_profile(keys, fiscal_code)

    def submit_message(self, keys: ServiceKeys, fiscal_code: str, content: MessageContent, *,
                       before_send: Callable[[], None] | None = None) -> str:
        return self._for(keys).submit_message(keys, fiscal_code, content, before_send=before_send)

    def get_message(self, keys: ServiceKeys, fiscal_code: str, io_message_id: str) -> IOMessageStatus:
        return self._for(keys).get_message(keys, fiscal_code, io_message_id)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
