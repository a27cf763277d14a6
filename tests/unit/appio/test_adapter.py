"""The httpx adapter against the twin (in-process) and against scripted failures."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import httpx
import pytest

from sandbox.appio import seed
from sandbox.appio.server import Faults, IOTwin, ServiceKey, TwinState
from services.appio.adapters.io_http import IOServicesClient
from services.appio.domain import templates
from services.appio.domain.errors import (
    IOBadRequest,
    IOMalformedReply,
    IONotFound,
    IOOutcomeUnknown,
    IOServerError,
    IOThrottled,
    IOUnauthorized,
    IOUnavailable,
)
from services.appio.ports import ServiceKeys
from sportello.ratelimit import SlidingWindowLimiter, Ticket

PRIMARY, SECONDARY = "primary-key-0001", "secondary-key-0001"
KEYS = ServiceKeys(limiter_key="cremona/anagrafe", primary=PRIMARY, secondary=SECONDARY)
CONTENT = templates.certificate_ready(comune="Comune di Cremona", certificate_type=8, verification_code="ABC123")


def twin_client(**state_kwargs: object) -> tuple[IOServicesClient, TwinState, list[str]]:
    state = TwinState({PRIMARY: ServiceKey("01SVC", "00297960197", "cremona/anagrafe#primary"),
                       SECONDARY: ServiceKey("01SVC", "00297960197", "cremona/anagrafe#secondary")},
                      processing_seconds=0, **state_kwargs)  # type: ignore[arg-type]
    used: list[str] = []
    inner = httpx.WSGITransport(app=IOTwin(state, sleep=lambda s: None))

    def handler(request: httpx.Request) -> httpx.Response:
        used.append(request.headers["Ocp-Apim-Subscription-Key"])
        return inner.handle_request(request)

    return IOServicesClient("http://io.test/api/v1", transport=httpx.MockTransport(handler)), state, used


def scripted(handler: Callable[[httpx.Request], httpx.Response]) -> IOServicesClient:
    return IOServicesClient("http://io.test/api/v1", transport=httpx.MockTransport(handler))


def test_profile_submit_and_status_round_trip_with_fiscal_code_in_the_body() -> None:
    client, state, used = twin_client()
    citizen = seed.ON_IO[0]
    profile = client.get_profile(KEYS, citizen)
    assert profile.sender_allowed and profile.preferred_languages == ("it_IT",)
    io_id = client.submit_message(KEYS, citizen, CONTENT)
    assert len(io_id) == 26
    assert client.get_message(KEYS, citizen, io_id).final
    assert state.submitted == {citizen: 1}
    assert used == [PRIMARY] * 3


def test_not_on_io_is_a_typed_404_and_a_blocked_sender_is_reported() -> None:
    client, _state, _used = twin_client()
    with pytest.raises(IONotFound):
        client.get_profile(KEYS, seed.NOT_ON_IO[0])
    assert client.get_profile(KEYS, seed.NOT_ALLOWED[0]).sender_allowed is False


def test_a_revoked_primary_falls_back_to_the_secondary_then_prefers_it() -> None:
    client, state, used = twin_client()
    state.revoked.add(PRIMARY)
    client.get_profile(KEYS, seed.ON_IO[0])
    client.get_profile(KEYS, seed.ON_IO[0])
    assert used == [PRIMARY, SECONDARY, SECONDARY]


def test_both_keys_refused_is_unauthorized() -> None:
    client, state, _used = twin_client()
    state.revoked |= {PRIMARY, SECONDARY}
    with pytest.raises(IOUnauthorized):
        client.submit_message(KEYS, seed.ON_IO[0], CONTENT)
    assert state.submitted == {}


def test_429_is_typed_with_retry_after_and_pauses_the_key_on_the_limiter() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(150, 5.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    client = IOServicesClient("http://io.test/api/v1", limiter=limiter, transport=httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"Retry-After": "7"})))
    with pytest.raises(IOThrottled) as caught:
        client.get_profile(KEYS, seed.ON_IO[0])
    assert caught.value.retry_after == 7.0
    assert limiter.acquire("cremona/anagrafe#primary") == pytest.approx(7.0)


def test_the_limiter_is_asked_before_every_request() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(3, 5.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    client, _state, used = twin_client()
    client._limiter = limiter
    for _ in range(4):
        client.get_profile(KEYS, seed.ON_IO[0])
    assert len(used) == 4 and now[0] == pytest.approx(5.0)  # the 4th waited for the window


class RecordingLimiter:
    """Records the order of events: a call's slot must span the intent and the whole HTTP exchange."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def begin(self, key: str = "") -> Ticket:
        self.events.append(f"begin {key}")
        return Ticket(key, len(self.events))

    def end(self, ticket: Ticket) -> None:
        self.events.append(f"end {ticket.key}")

    def pause(self, key: str, seconds: float) -> None:
        self.events.append(f"pause {key} {seconds:g}")


@pytest.mark.parametrize("answer", [201, 429, "lost"])
def test_a_call_holds_its_limiter_slot_from_before_the_intent_until_its_answer(answer: object) -> None:
    events: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events.append("io received")
        if answer == "lost":
            raise httpx.ReadTimeout("no answer", request=request)
        if answer == 429:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(201, json={"id": "01ABC"})

    client = IOServicesClient("http://io.test/api/v1", limiter=RecordingLimiter(events),
                              transport=httpx.MockTransport(handler))
    with pytest.raises((IOThrottled, IOOutcomeUnknown)) if answer != 201 else nullcontext():
        client.submit_message(KEYS, seed.ON_IO[0], CONTENT, before_send=lambda: events.append("intent"))
    key = "cremona/anagrafe#primary"
    expected = [f"begin {key}", "intent", "io received", f"end {key}"]
    assert events == expected + ([f"pause {key} 2"] if answer == 429 else [])


@pytest.mark.parametrize(("status", "error"), [(400, IOBadRequest), (404, IONotFound), (500, IOServerError),
                                                (503, IOServerError), (302, IOMalformedReply),
                                                (409, IOMalformedReply)])
def test_every_documented_status_becomes_a_typed_error(status: int, error: type[Exception]) -> None:
    client = scripted(lambda r: httpx.Response(status, json={"title": "x", "detail": "d"}))
    with pytest.raises(error):
        client.submit_message(KEYS, seed.ON_IO[0], CONTENT)
    with pytest.raises(error):
        client.get_message(KEYS, seed.ON_IO[0], "01ABC")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"sender_allowed": "yes"}',
                                  b'{"sender_allowed": true, "preferred_languages": "it"}'])
def test_malformed_profile_replies_are_typed(body: bytes) -> None:
    client = scripted(lambda r: httpx.Response(200, content=body))
    with pytest.raises(IOMalformedReply):
        client.get_profile(KEYS, seed.ON_IO[0])


@pytest.mark.parametrize("body", [b"", b'{"id": ', b'{"id": ""}', b"[1]"])
def test_a_201_without_a_readable_id_leaves_the_outcome_unknown(body: bytes) -> None:
    client = scripted(lambda r: httpx.Response(201, content=body))
    with pytest.raises(IOOutcomeUnknown):
        client.submit_message(KEYS, seed.ON_IO[0], CONTENT)


def test_a_lost_answer_to_a_submission_is_unknown_but_a_lost_read_is_just_unavailable() -> None:
    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(IOOutcomeUnknown):
        scripted(read_timeout).submit_message(KEYS, seed.ON_IO[0], CONTENT)
    with pytest.raises(IOUnavailable):
        scripted(read_timeout).get_profile(KEYS, seed.ON_IO[0])
    with pytest.raises(IOUnavailable):
        scripted(refused).submit_message(KEYS, seed.ON_IO[0], CONTENT)


def test_before_send_runs_once_right_before_the_first_attempt() -> None:
    client, state, _used = twin_client()
    state.revoked.add(PRIMARY)
    calls: list[int] = []
    client.submit_message(KEYS, seed.ON_IO[0], CONTENT, before_send=lambda: calls.append(len(state.submitted)))
    assert calls == [0] and state.submitted == {seed.ON_IO[0]: 1}


def test_twin_faults_reach_the_adapter_as_typed_errors() -> None:
    client, state, _used = twin_client()
    state.set_faults(Faults(next=["500", "429", "malformed"], retry_after=2))
    with pytest.raises(IOServerError):
        client.get_profile(KEYS, seed.ON_IO[0])
    with pytest.raises(IOThrottled):
        client.get_profile(KEYS, seed.ON_IO[0])
    with pytest.raises(IOOutcomeUnknown):
        client.submit_message(KEYS, seed.ON_IO[0], CONTENT)
    assert state.submitted == {seed.ON_IO[0]: 1}  # the malformed answer hid a created message
