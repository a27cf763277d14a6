"""The gateway's citizen read model (ADR 0012) and its cache of verified tokens.

The read model may only ever answer what pagopa answered: every rule below is about *when* it
must stop answering from memory (an event, a racing load, the feed down, age), never about
patching a view itself.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway.auth import Authenticator
from gateway.readmodel import CREATED, SNAPSHOT_LIMIT, CitizenPositions, page
from sportello.tokens import Principal, SigningKey, TokenIssuer, TokenVerifier, Unauthenticated
from tests.support.spid import key_and_cert

ME, OTHER = "RSSMRA85T10A562S", "VRDLGU70A01D150D"
PAID = "it.sportello.pagopa.payment.completed.v1"


def view(position_id: str, status: str = "published", debtor: str = ME) -> dict[str, Any]:
    return {"id": position_id, "status": status, "debtor": {"fiscal_code": debtor}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def loaded(model: CitizenPositions, tenant: str, subject: str, views: list[dict[str, Any]]) -> bool:
    return model.end_load(model.begin_load(tenant, subject), views)


@pytest.fixture
def model() -> CitizenPositions:
    model = CitizenPositions(clock=Clock())
    model.feed_up()
    return model


def test_a_loaded_citizen_is_served_from_memory_and_only_to_himself(model: CitizenPositions) -> None:
    assert model.get("cremona", ME) is None
    assert loaded(model, "cremona", ME, [view("a"), view("b")])
    assert [v["id"] for v in model.get("cremona", ME) or []] == ["a", "b"]
    assert model.get("cremona", OTHER) is None  # another citizen: not held
    assert model.get("lodi", ME) is None  # same fiscal code, another Comune: not held
    assert (model.stats.hits, model.stats.misses, model.stats.kept) == (1, 3, 1)
    assert model.default_body("cremona", ME) == b'{"items": [{"id": "a", "status": "published", "debtor": ' \
        b'{"fiscal_code": "RSSMRA85T10A562S"}}, {"id": "b", "status": "published", "debtor": ' \
        b'{"fiscal_code": "RSSMRA85T10A562S"}}]}'


def test_created_event_forgets_the_debtor_in_that_tenant_only(model: CitizenPositions) -> None:
    loaded(model, "cremona", ME, [view("a")])
    loaded(model, "lodi", ME, [view("z")])
    loaded(model, "cremona", OTHER, [view("o", debtor=OTHER)])
    model.apply(CREATED, "cremona", {"position_id": "new", "debtor_fiscal_code": ME})
    assert model.get("cremona", ME) is None
    assert model.get("lodi", ME) is not None and model.get("cremona", OTHER) is not None


@pytest.mark.parametrize("event_type", [PAID, "it.sportello.pagopa.payment.position.expired.v1",
                                        "it.sportello.pagopa.payment.position.invalidated.v1"])
def test_a_change_to_a_held_position_forgets_its_owner(model: CitizenPositions, event_type: str) -> None:
    loaded(model, "cremona", ME, [view("a"), view("b")])
    loaded(model, "cremona", OTHER, [view("o", debtor=OTHER)])
    model.apply(event_type, "lodi", {"position_id": "b"})  # same id in another tenant: not ours
    assert model.get("cremona", ME) is not None
    model.apply(event_type, "cremona", {"position_id": "b"})
    assert model.get("cremona", ME) is None
    assert model.get("cremona", OTHER) is not None


def test_a_load_that_raced_with_an_event_is_answered_but_not_kept(model: CitizenPositions) -> None:
    load = model.begin_load("cremona", ME)
    model.apply(CREATED, "cremona", {"debtor_fiscal_code": ME})
    assert not model.end_load(load, [view("a")])
    assert model.get("cremona", ME) is None
    # a change to a position nobody holds may be in any load of that tenant on its way
    load = model.begin_load("cremona", ME)
    other_tenant = model.begin_load("lodi", ME)
    model.apply(PAID, "cremona", {"position_id": "unknown"})
    assert not model.end_load(load, [view("a")])
    assert model.end_load(other_tenant, [view("z")])


def test_feed_down_serves_nothing_from_memory_and_feed_up_forgets_everything(model: CitizenPositions) -> None:
    loaded(model, "cremona", ME, [view("a")])
    load = model.begin_load("cremona", OTHER)
    model.feed_down()
    assert model.get("cremona", ME) is None
    assert not loaded(model, "cremona", ME, [view("a")])  # not kept while no event can arrive
    model.feed_up()
    assert not model.end_load(load, [view("o")])  # started before the feed came back
    assert model.get("cremona", ME) is None and len(model) == 0
    assert loaded(model, "cremona", ME, [view("a")])


def test_old_entries_are_reloaded_and_the_least_recent_citizen_goes_first() -> None:
    clock = Clock()
    model = CitizenPositions(clock=clock, max_age_seconds=60, max_citizens=2)
    model.feed_up()
    loaded(model, "cremona", ME, [view("a")])
    clock.now += 61
    assert model.get("cremona", ME) is None
    loaded(model, "cremona", ME, [view("a")])
    loaded(model, "cremona", OTHER, [view("o")])
    model.get("cremona", ME)  # ME used last: OTHER is the least recent
    loaded(model, "cremona", "BNCGLI90D45D150M", [view("g")])
    assert model.get("cremona", OTHER) is None and model.get("cremona", ME) is not None


def test_a_full_page_is_never_kept(model: CitizenPositions) -> None:
    assert not loaded(model, "cremona", ME, [view(str(n)) for n in range(SNAPSHOT_LIMIT)])
    assert model.get("cremona", ME) is None


def test_page_filters_and_slices_like_list_positions() -> None:
    views = [view("a"), view("b", "paid"), view("c"), view("d", "expired")]
    assert [v["id"] for v in page(views, status=None, limit=2, offset=1)] == ["b", "c"]
    assert [v["id"] for v in page(views, status="published", limit=50, offset=0)] == ["a", "c"]
    assert page(views, status="draft", limit=50, offset=0) == []


# -- verified tokens ------------------------------------------------------------------------------
def _request(token: str) -> Request:
    return Request(EnvironBuilder(headers={"Authorization": f"Bearer {token}"}).get_environ())


def test_verified_tokens_are_remembered_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = TokenIssuer(SigningKey(key_and_cert("gateway-a")[0]))
    checks: list[str] = []
    real_verify = TokenVerifier.verify

    def counting_verify(self: TokenVerifier, token: str) -> Principal:
        checks.append(token)
        return real_verify(self, token)

    monkeypatch.setattr(TokenVerifier, "verify", counting_verify)
    clock = Clock()
    clock.now = time.time()
    auth = Authenticator(clock=clock)
    token = issuer.issue(subject=ME, tenant="cremona", level=2, roles=["citizen"], now=clock.now)
    first = auth.authenticate(_request(token), issuer.jwks)
    assert auth.authenticate(_request(token), issuer.jwks) == first
    assert len(checks) == 1  # the second time from memory
    clock.now = first.expires_at + 31  # past expiry and leeway: memory no longer answers
    auth.authenticate(_request(token), issuer.jwks)
    assert len(checks) == 2


def test_a_withdrawn_key_forgets_the_tokens_it_signed() -> None:
    old, new = SigningKey(key_and_cert("gateway-a")[0]), SigningKey(key_and_cert("gateway-b")[0])
    published = {"jwks": TokenIssuer(old).jwks()}
    auth = Authenticator()
    token = TokenIssuer(old).issue(subject=ME, tenant="cremona", level=2, roles=["citizen"])
    auth.authenticate(_request(token), lambda: published["jwks"])
    published["jwks"] = TokenIssuer(new).jwks()  # rotation done, old key no longer published
    fresh = TokenIssuer(new).issue(subject=ME, tenant="cremona", level=2, roles=["citizen"])
    auth.authenticate(_request(fresh), lambda: published["jwks"])  # unknown kid: refresh
    assert token not in auth._verified
    with pytest.raises(Unauthenticated):
        auth.authenticate(_request(token), lambda: published["jwks"])
