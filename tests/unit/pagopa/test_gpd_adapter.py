"""The real GPD adapter against the GPD twin, in process (httpx's WSGI transport), on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from sandbox.gpd.app import GpdTwin
from services.pagopa.adapters.gpd import HttpGpd, gpd_limiter
from services.pagopa.domain.errors import GpdRejected, GpdUnavailable
from services.pagopa.domain.iuv import notice_for
from services.pagopa.domain.positions import PaymentPosition
from tests.unit.pagopa.support import request, tenant

ORG = "00297960197"


@dataclass
class Clock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def twin(clock: Clock) -> GpdTwin:
    return GpdTwin(clock=clock)


def make_gpd(twin: GpdTwin, clock: Clock, **kwargs: object) -> HttpGpd:
    client = httpx.Client(transport=httpx.WSGITransport(app=twin))
    return HttpGpd(limiter=gpd_limiter(clock=clock, sleep=clock.sleep), client=client, sleep=clock.sleep,
                   **kwargs)  # type: ignore[arg-type]


def position(n: int = 1, **kw: object) -> PaymentPosition:
    number = notice_for("47", n)
    return PaymentPosition(id=f"p{n}", tenant="cremona", iupd=f"{ORG}-p{n}", iuv=number.iuv,
                           notice_number=number.notice_number, payee_fiscal_code=ORG, company_name="Comune",
                           request=request(**kw))  # type: ignore[arg-type]


def test_create_publish_get_invalidate_delete(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    t = tenant()
    created = gpd.create(t, position(), publish=True)
    assert created.status == "VALID" and created.navs == (position().notice_number,)
    assert gpd.get(t, position().iupd).status == "VALID"  # type: ignore[union-attr]
    assert gpd.get(t, "nope") is None
    assert gpd.invalidate(t, position().iupd).status == "INVALID"
    assert gpd.invalidate(t, position().iupd).status == "INVALID"  # 409 understood: already invalid
    gpd.create(t, position(2), publish=False)
    assert gpd.publish(t, position(2).iupd).status == "VALID"
    assert gpd.publish(t, position(2).iupd).status == "VALID"  # 409 understood: already published
    gpd.delete(t, position(2).iupd)
    gpd.delete(t, position(2).iupd)  # 404 is fine
    assert twin.received["POST create"] == 2


def test_a_repeated_create_is_not_a_duplicate(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    gpd.create(tenant(), position(), publish=True)
    again = gpd.create(tenant(), position(), publish=True)
    assert again.status == "VALID"
    assert len(twin.positions[ORG]) == 1
    assert twin.statuses["409"] == 1


def test_iuv_used_by_another_iupd_is_a_rejection(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    gpd.create(tenant(), position(), publish=True)
    clash = position()
    clash = PaymentPosition(**{**clash.__dict__, "iupd": f"{ORG}-other"})
    with pytest.raises(GpdRejected):
        gpd.create(tenant(), clash, publish=True)


def test_the_twin_frees_an_iuv_when_its_position_is_deleted(twin: GpdTwin, clock: Clock) -> None:
    """The twin's IUV index (one look-up per option, not a scan of every position) follows deletes."""
    gpd = make_gpd(twin, clock)
    gpd.create(tenant(), position(), publish=False)
    assert twin.iuv_owner[ORG] == {position().iuv: position().iupd}
    gpd.delete(tenant(), position().iupd)
    assert twin.iuv_owner[ORG] == {}
    reused = PaymentPosition(**{**position().__dict__, "iupd": f"{ORG}-other"})
    assert gpd.create(tenant(), reused, publish=True).status == "VALID"  # the IUV is free again


def test_twin_validation_is_a_rejection(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    bad = position()
    bad = PaymentPosition(**{**bad.__dict__, "request": request(amount=1600).__class__(
        **{**request().__dict__, "amount_cents": 1500})})
    with pytest.raises(GpdRejected, match="400"):
        gpd.create(tenant(), bad, publish=True)


def test_retries_on_5xx_with_backoff_then_succeeds(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    twin.faults = {"status": 503, "count": 2}
    assert gpd.create(tenant(), position(), publish=True).status == "VALID"
    assert twin.statuses["503"] == 2 and len(clock.slept) == 2 and clock.slept[1] > clock.slept[0]


def test_gives_up_after_the_attempts_allowed(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock, max_attempts=3)
    twin.faults = {"status": 500, "count": 10}
    with pytest.raises(GpdUnavailable):
        gpd.create(tenant(), position(), publish=True)
    assert twin.statuses["500"] == 3


def test_malformed_body_is_a_typed_error(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    gpd.create(tenant(), position(), publish=True)
    twin.faults = {"malformed": True, "count": 1}
    with pytest.raises(GpdRejected, match="not JSON"):
        gpd.get(tenant(), position().iupd)


def test_429_retry_after_pauses_the_key(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    twin.faults = {"status": 429, "count": 1, "retry_after": 7}
    started = clock.now
    assert gpd.create(tenant(), position(), publish=True).status == "VALID"
    assert clock.now - started >= 7


def test_missing_key_is_refused(twin: GpdTwin, clock: Clock) -> None:
    strict = GpdTwin(keys=["right"], clock=clock)
    gpd = make_gpd(strict, clock)
    with pytest.raises(GpdRejected, match="401"):
        gpd.create(tenant(key="wrong"), position(), publish=True)


def test_the_limiter_keeps_gpds_limit_so_the_twin_never_says_429(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    started = clock.now
    for n in range(1, 251):
        gpd.create(tenant(), position(n), publish=True)
    assert twin.statuses.get("429", 0) == 0
    assert twin.statuses["201"] == 250
    assert 20 <= clock.now - started < 21  # 250 calls at 100 / 10 s: two full windows of waiting


class SlowOnTheWay(httpx.BaseTransport):
    """Calls that spend `delays[i]` seconds (fake clock) between leaving and reaching the twin."""

    def __init__(self, app: GpdTwin, clock: Clock, delays: list[float]) -> None:
        self.inner, self.clock, self.delays = httpx.WSGITransport(app=app), clock, delays

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.clock.now += self.delays.pop(0) if self.delays else 0.0
        return self.inner.handle_request(request)


def test_a_call_delayed_on_the_way_still_counts_in_its_window_at_gpd(clock: Clock) -> None:
    # GPD counts arrivals: the first call reaches it 0.5 s late. Counted only when it left, the third
    # call would leave 10 s after the first left and arrive in the same GPD window as the first two.
    twin = GpdTwin(clock=clock, limit=2)
    client = httpx.Client(transport=SlowOnTheWay(twin, clock, [0.5]))
    gpd = HttpGpd(limiter=gpd_limiter(2, 10.0, clock=clock, sleep=clock.sleep), client=client, sleep=clock.sleep)
    for n in (1, 2, 3):
        gpd.create(tenant(), position(n), publish=True)
    assert twin.statuses.get("429", 0) == 0
    assert twin.statuses["201"] == 3


def test_without_the_limiter_the_twin_enforces_the_limit(twin: GpdTwin, clock: Clock) -> None:
    client = httpx.Client(transport=httpx.WSGITransport(app=twin))
    headers = {"Ocp-Apim-Subscription-Key": "k"}
    codes = [client.get(f"http://t/gpd/debt-positions-service/v1/organizations/{ORG}/debtpositions/x",
                        headers=headers).status_code for _ in range(101)]
    assert codes[:100] == [404] * 100
    last = client.get(f"http://t/gpd/debt-positions-service/v1/organizations/{ORG}/debtpositions/x", headers=headers)
    assert last.status_code == 429 and 1 <= int(last.headers["Retry-After"]) <= 10
    other = client.get(f"http://t/gpd/debt-positions-service/v1/organizations/{ORG}/debtpositions/x",
                       headers={"Ocp-Apim-Subscription-Key": "other"})
    assert other.status_code == 404  # per key


def test_bulk_create_and_resume_without_duplicates(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    batch = [position(n) for n in range(1, 6)]
    gpd.create_many(tenant(), batch[:3], publish=True)
    gpd.create_many(tenant(), batch, publish=True)  # resumed: 3 exist, 409, a GET each, the 2 missing in bulk
    assert len(twin.positions[ORG]) == 5
    assert twin.received["POST create_many"] == 3 and twin.received["GET get"] == 5
    assert twin.received["POST create"] == 0  # not one by one: half the calls
    gpd.create_many(tenant(), batch, publish=True)  # all there: 409 and five GETs, nothing created
    assert len(twin.positions[ORG]) == 5 and twin.received["POST create_many"] == 4


def test_a_bulk_iuv_clash_is_found_one_by_one(twin: GpdTwin, clock: Clock) -> None:
    gpd = make_gpd(twin, clock)
    gpd.create(tenant(), position(1), publish=True)
    clash = PaymentPosition(**{**position(1).__dict__, "iupd": f"{ORG}-other"})  # same IUV, another IUPD
    with pytest.raises(GpdRejected):
        gpd.create_many(tenant(), [position(2), clash], publish=True)
    assert twin.received["POST create"] >= 2  # the second bulk 409 fell back to one by one
