"""App IO end to end through the gateway: gateway, appio, pagopa, spid, the IO and GPD twins, each a process.

Covers: an operator sends a message and follows it until IO says it is processed; a campaign from a
CSV with its progress and per-recipient report (sent / not on IO / not allowed / failed); role
checks and tenant isolation; a payment position created through the gateway reaching the citizen as
exactly one IO message with its payment data (twin's counters), and a citizen not on IO reported,
never retried; in-doubt messages settled by an operator (mark sent / resend); key rotation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from sandbox.appio import seed
from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
OPERATOR = "VRDLGU70A01D150D"
CITIZEN = "RSSMRA85T10A562S"
ORG = "00297960197"
MARKDOWN = ("Gentile cittadina, gentile cittadino, ti ricordiamo che gli uffici dell'anagrafe resteranno "
            "chiusi lunedì prossimo per lavori di manutenzione straordinaria.")
LODI = """
id: lodi
name: Comune di Lodi
fiscal_code: "84507570152"
istat_code: "098031"
ipa_code: c_e648
appio:
  base_url: http://127.0.0.1:8103/api/v1
  services:
    - name: anagrafe
      service_id: 01SANDBOXLODIANAGRAFE000000
      primary_key: lodi-sandbox-io-anagrafe-key
"""
APPIO_ENV = {
    "SPORTELLO_APPIO_POLL_SECONDS": "0.1", "SPORTELLO_APPIO_HTTP_TIMEOUT_SECONDS": "2",
    "SPORTELLO_APPIO_CONNECT_TIMEOUT_SECONDS": "1", "SPORTELLO_APPIO_LEASE_SECONDS": "15",
    "SPORTELLO_APPIO_BACKOFF_SECONDS": "0.2", "SPORTELLO_APPIO_MAX_ATTEMPTS": "3",
    "SPORTELLO_APPIO_STATUS_POLL_SECONDS": "0.3", "SPORTELLO_APPIO_FOLLOW_SECONDS": "60",
}
FINAL = {"sent", "not_deliverable", "failed", "in_doubt"}


def _deliverable() -> Iterator[str]:
    """Distinct synthetic citizens on IO who allow the Comune (Italian speakers), one per use."""
    for code in seed.citizens(5000)[3000:]:
        profile = seed.profile_for(code)
        if profile and profile["sender_allowed"] and profile["preferred_languages"] == ["it_IT"]:
            yield code


PEOPLE = _deliverable()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("messages"), services=("pagopa", "appio", "spid"),
                        twins=("gpd", "appio"), env=APPIO_ENV,
                        twin_env={"appio": {"APPIO_TWIN_PROCESSING_SECONDS": "0.3"}},
                        extra_tenants={"lodi.yaml": LODI}) as running:
        yield running


class IO:
    """The IO twin's admin side (not IO's contract): counters, received messages, faults, keys."""

    def __init__(self, platform: Platform) -> None:
        self.url = platform.twins["appio"]
        self.secrets = platform.secrets_dir

    def get(self, path: str, **params: str) -> Any:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10).json()

    def post(self, path: str, body: Any) -> Any:
        reply = httpx.post(f"{self.url}{path}", json=body, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def received(self, fiscal_code: str) -> list[dict[str, Any]]:
        return list(self.get("/__admin/messages", fiscal_code=fiscal_code))

    def counts(self) -> dict[str, dict[str, int]]:
        return dict(self.get("/__admin/counts"))

    def key(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()


@pytest.fixture
def io(platform: Platform) -> Iterator[IO]:
    twin = IO(platform)
    yield twin
    twin.post("/__admin/faults", {})


def operator(platform: Platform, tenant: str = "cremona") -> dict[str, str]:
    return platform.auth(OPERATOR, ["operator"], tenant=tenant)


def messages_url(platform: Platform, path: str = "", tenant: str = "cremona") -> str:
    return platform.url(f"/v1/tenants/{tenant}/messages{path}")


def send(platform: Platform, fiscal_code: str, **extra: Any) -> dict[str, Any]:
    reply = httpx.post(messages_url(platform), headers=operator(platform), timeout=30,
                       json={"fiscal_code": fiscal_code, "subject": "Chiusura uffici anagrafe", "markdown": MARKDOWN,
                             **extra})
    assert reply.status_code == 202, reply.text
    assert reply.headers["Location"] == f"/v1/tenants/cremona/messages/{reply.json()['message_id']}"
    return dict(reply.json())


def follow(platform: Platform, message_id: str, until: set[str] = FINAL, timeout: float = 40) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        reply = httpx.get(messages_url(platform, f"/{message_id}"), headers=operator(platform), timeout=10)
        assert reply.status_code == 200, reply.text
        body = dict(reply.json())
        return body if body["state"] in until else None
    return dict(wait_for(current, timeout=timeout, interval=0.2, what=f"message in {sorted(until)}"))


def test_operator_sends_a_message_and_follows_it_until_io_has_processed_it(platform: Platform, io: IO) -> None:
    citizen = next(PEOPLE)
    key = f"e2e-{uuid.uuid4()}"
    payment = {"amount_cents": 4200, "notice_number": "347000000000099999", "payee_fiscal_code": ORG}
    created = send(platform, citizen, idempotency_key=key, payment_data=payment,
                   due_date=(date.today() + timedelta(days=30)).isoformat())
    assert created["state"] == "pending" and created["kind"] == "free_text"
    again = send(platform, citizen, idempotency_key=key, payment_data=payment)  # a double click
    assert again["message_id"] == created["message_id"]
    done = follow(platform, created["message_id"])
    assert (done["state"], done["outcome"], done["io_status"]) == ("sent", "sent", "PROCESSED")
    [received] = io.received(citizen)
    assert received["id"] == done["io_message_id"]
    assert received["content"]["subject"] == "Chiusura uffici anagrafe"
    assert received["content"]["payment_data"]["amount"] == 4200
    assert io.counts()["status"][citizen] >= 1  # the status was followed, not assumed


def test_bad_input_is_a_problem_and_sends_nothing(platform: Platform, io: IO) -> None:
    citizen = next(PEOPLE)
    for body in ({"fiscal_code": citizen, "subject": "Breve", "markdown": MARKDOWN},
                 {"fiscal_code": "RSSMRA85T10A562X", "subject": "Chiusura uffici anagrafe", "markdown": MARKDOWN},
                 {"fiscal_code": citizen, "subject": "Chiusura uffici anagrafe", "markdown": MARKDOWN,
                  "payment_data": {"amount_cents": 0, "notice_number": "1", "payee_fiscal_code": ORG}},
                 {"fiscal_code": citizen, "subject": "Chiusura uffici anagrafe", "markdown": MARKDOWN, "cc": "x"}):
        reply = httpx.post(messages_url(platform), json=body, headers=operator(platform), timeout=30)
        assert reply.status_code == 400, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
    assert citizen not in io.counts()["profiles"]


def test_roles_and_tenant_isolation(platform: Platform, io: IO) -> None:
    created = send(platform, next(PEOPLE))
    mine = f"/{created['message_id']}"
    citizen = platform.auth(CITIZEN, ["citizen"])
    body = {"fiscal_code": CITIZEN, "subject": "Chiusura uffici anagrafe", "markdown": MARKDOWN}
    campaign = {"name": "x", "subject": "Chiusura uffici anagrafe", "markdown": MARKDOWN, "csv": CITIZEN}
    calls = [("GET", messages_url(platform, mine), None), ("GET", messages_url(platform), None),
             ("POST", messages_url(platform), body),
             ("POST", messages_url(platform, f"{mine}/resolution"), {"action": "resend", "confirm": True}),
             ("POST", platform.url("/v1/tenants/cremona/message-campaigns"), campaign)]
    for method, url, payload in calls:
        assert httpx.request(method, url, json=payload, headers=citizen, timeout=10).status_code == 403, url
        assert httpx.request(method, url, json=payload, timeout=10).status_code == 401, url
        foreign = httpx.request(method, url, json=payload, headers=operator(platform, "lodi"), timeout=10)
        assert foreign.status_code == 403 and foreign.json()["code"] == "access.forbidden", url
    # Lodi's operator, on Lodi's own paths, cannot reach Cremona's message by its id
    theirs = httpx.get(messages_url(platform, mine, tenant="lodi"), headers=operator(platform, "lodi"), timeout=10)
    assert theirs.status_code == 404 and theirs.json()["code"] == "resource.not_found"
    listed = httpx.get(messages_url(platform, tenant="lodi"), headers=operator(platform, "lodi"), timeout=10)
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_campaign_from_csv_progress_and_per_recipient_report(platform: Platform, io: IO) -> None:
    sent = [next(PEOPLE) for _ in range(3)]
    failing = next(PEOPLE)
    not_on_io, not_allowed = seed.NOT_ON_IO[2], seed.NOT_ALLOWED[2]
    io.post("/__admin/faults", {"rates": {"500": 1.0}, "operations": ["submit"], "fiscal_codes": [failing]})
    lines = ["codice_fiscale", *sent, not_on_io, not_allowed, failing, sent[0].lower()]  # a duplicate
    created = httpx.post(platform.url("/v1/tenants/cremona/message-campaigns"), headers=operator(platform),
                         timeout=30, json={"name": "Chiusura anagrafe", "subject": "Chiusura uffici anagrafe",
                                           "markdown": MARKDOWN, "csv": "\n".join(lines) + "\n"})
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert (campaign["recipients"], campaign["duplicates_dropped"]) == (6, 1)
    url = platform.url(created.headers["Location"])

    def progress() -> dict[str, Any] | None:
        body = httpx.get(url, headers=operator(platform), timeout=10).json()
        return body if body["done"] else None

    done = wait_for(progress, timeout=60, interval=0.3, what="the campaign done")
    assert done["outcomes"] == {"pending": 0, "sent": 3, "not_on_io": 1, "not_allowed": 1, "failed": 1,
                                "in_doubt": 0}
    report = httpx.get(f"{url}/report", params={"limit": 10}, headers=operator(platform), timeout=10).json()
    outcomes = {item["fiscal_code"]: item["outcome"] for item in report["items"]}
    assert outcomes == {**{cf: "sent" for cf in sent}, not_on_io: "not_on_io", not_allowed: "not_allowed",
                        failing: "failed"}
    assert [i["reason"] for i in report["items"] if i["fiscal_code"] == failing] == ["appio.io_server_error"]
    counts = io.counts()
    assert all(counts["messages"][cf] == 1 for cf in sent)
    assert failing not in counts["messages"] and counts["injected"]["500"] >= 3
    assert counts["profiles"][not_on_io] == 1 and not_on_io not in counts["messages"]
    page = httpx.get(f"{url}/report", params={"offset": 5, "limit": 10}, headers=operator(platform), timeout=10)
    assert len(page.json()["items"]) == 1


def test_a_payment_position_reaches_the_citizen_as_exactly_one_io_message(platform: Platform, io: IO) -> None:
    citizen = next(PEOPLE)
    due = (date.today() + timedelta(days=45)).isoformat()
    created = httpx.post(platform.url("/v1/tenants/cremona/payments/positions"), headers=operator(platform),
                         timeout=30, json={"description": "TARI 2027 - prima rata", "amount_cents": 15490,
                                           "due_date": due, "io_service": "tributi",
                                           "debtor": {"fiscal_code": citizen, "full_name": "Anna Verdi"}})
    assert created.status_code == 201, created.text
    position = created.json()
    [received] = wait_for(lambda: io.received(citizen), timeout=40, interval=0.3, what="the IO message")
    assert received["content"]["payment_data"] == {"amount": 15490, "notice_number": position["notice_number"],
                                                   "invalid_after_due_date": False, "payee": {"fiscal_code": ORG}}
    assert received["content"]["due_date"] == f"{due}T00:00:00.000Z"
    assert received["content"]["subject"] == "Avviso di pagamento: TARI 2027 - prima rata"
    assert received["sender_service_id"] == "01SANDBOXTRIBUTI00000000000"

    def ours() -> dict[str, Any] | None:
        items = httpx.get(messages_url(platform), headers=operator(platform), timeout=10).json()["items"]
        found = [m for m in items if m["reference"] == position["id"]]
        return found[0] if found and found[0]["state"] == "sent" else None

    message = wait_for(ours, timeout=30, interval=0.3, what="the message sent")
    assert (message["kind"], message["io_message_id"]) == ("payment_notice", received["id"])
    time.sleep(1.0)
    assert io.counts()["messages"][citizen] == 1


def test_a_citizen_not_on_io_is_reported_and_not_retried(platform: Platform, io: IO) -> None:
    citizen = seed.NOT_ON_IO[3]
    created = httpx.post(platform.url("/v1/tenants/cremona/payments/positions"), headers=operator(platform),
                         timeout=30, json={"description": "Canone unico 2027", "amount_cents": 3000,
                                           "due_date": (date.today() + timedelta(days=45)).isoformat(),
                                           "debtor": {"fiscal_code": citizen, "full_name": "Luca Neri"}})
    assert created.status_code == 201, created.text

    def reported() -> list[Any]:
        return platform.rows("appio", "SELECT state, outcome_reason FROM appio_messages WHERE reference = :r "
                                      "AND state = 'not_deliverable'", r=created.json()["id"])

    [(_state, reason)] = wait_for(reported, timeout=40, interval=0.3, what="not deliverable")
    assert reason == "not_on_io"
    time.sleep(1.5)
    counts = io.counts()
    assert counts["profiles"][citizen] == 1 and citizen not in counts["messages"]
    assert "it.sportello.appio.message.not_deliverable.v1" in platform.outbox_types("appio")


def test_an_operator_settles_in_doubt_messages(platform: Platform, io: IO) -> None:
    kept, lost = next(PEOPLE), next(PEOPLE)
    # IO creates the message but its answer is unreadable: in doubt, IO holds it
    io.post("/__admin/faults", {"rates": {"malformed": 1.0}, "operations": ["submit"], "fiscal_codes": [kept]})
    first = follow(platform, send(platform, kept)["message_id"])
    # the answer never comes (read timeout): in doubt, IO does not hold it
    io.post("/__admin/faults", {"rates": {"timeout": 1.0}, "operations": ["submit"], "fiscal_codes": [lost],
                                "timeout_seconds": 3})
    second = follow(platform, send(platform, lost)["message_id"])
    io.post("/__admin/faults", {})
    assert (first["state"], second["state"]) == ("in_doubt", "in_doubt")
    waiting = httpx.get(messages_url(platform), params={"state": "in_doubt"}, headers=operator(platform),
                        timeout=10).json()["items"]
    assert {first["message_id"], second["message_id"]} <= {m["message_id"] for m in waiting}

    def resolve(message_id: str, **body: Any) -> httpx.Response:
        return httpx.post(messages_url(platform, f"/{message_id}/resolution"), json=body,
                          headers=operator(platform), timeout=30)

    [held] = io.received(kept)  # what the operator learns from IO's side
    assert resolve(first["message_id"], action="resend").status_code == 400  # no confirmation
    assert resolve(first["message_id"], action="mark_sent", io_message_id="01UNKNOWNMESSAGE").status_code == 409
    marked = resolve(first["message_id"], action="mark_sent", io_message_id=held["id"])
    assert marked.status_code == 200, marked.text
    assert marked.json()["resolution"]["action"] == "mark_sent"
    assert follow(platform, first["message_id"], {"sent"})["io_message_id"] == held["id"]

    assert io.received(lost) == []
    resent = resolve(second["message_id"], action="resend", confirm=True)
    assert resent.status_code == 200 and resent.json()["state"] == "pending"
    again = resolve(second["message_id"], action="resend", confirm=True)
    assert again.status_code == 409 and again.json()["code"] == "appio.message_not_in_doubt"
    follow(platform, second["message_id"], {"sent"})
    counts = io.counts()["messages"]
    assert (counts[kept], counts[lost]) == (1, 1)


def test_key_rotation_secondary_then_none(platform: Platform, io: IO) -> None:
    primary = io.key("CREMONA_IO_ANAGRAFE_PRIMARY_KEY")
    secondary = io.key("CREMONA_IO_ANAGRAFE_SECONDARY_KEY")
    rotated, refused = next(PEOPLE), next(PEOPLE)
    try:
        io.post("/__admin/keys", {"revoke": [primary]})
        done = follow(platform, send(platform, rotated, io_service="anagrafe")["message_id"])
        assert done["state"] == "sent"
        [received] = io.received(rotated)
        assert received["sender_service_id"] == "01SANDBOXANAGRAFE0000000000"
        assert io.get("/__admin/stats")["keys"]["cremona/anagrafe#secondary"]["requests"] >= 3
        io.post("/__admin/keys", {"revoke": [secondary]})
        failed = follow(platform, send(platform, refused, io_service="anagrafe")["message_id"])
        assert (failed["state"], failed["reason"]) == ("failed", "appio.io_unauthorized")
        assert io.received(refused) == []
    finally:
        io.post("/__admin/keys", {"restore": [primary, secondary]})
