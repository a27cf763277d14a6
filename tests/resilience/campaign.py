"""The campaign the resilience scenarios run, and how they judge it: exact counts at the twins.

A TARI campaign is uploaded as CSV through the gateway; `pagopa` makes one position per row on the
GPD twin (v2 bulk, GPD's 100 calls / 10 s) and announces each with `payment.position.created`;
`appio` turns each into one IO message to the debtor (profile check, submission, status). The
scenarios break things while it runs; at the end every deliverable citizen must hold exactly one
position at the GPD twin and exactly one message at the IO twin (the others none), whatever broke.

Everything runs on a private RabbitMQ node and a private PostgreSQL cluster (`servers.py`) so the
scenario may restart them. Sizes come from the environment: `RESILIENCE_RECIPIENTS` (the default
suite runs a smoke; `make resilience` runs 10,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandbox.appio import seed
from tests.resilience.servers import PrivatePostgres, PrivateRabbitMQ
from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

ORG = "00297960197"
OPERATOR = "RSSMRA85T10A562S"
BASE = "/v1/tenants/cremona/payments/campaigns"
ACTIVE = ("pending", "profile_checked", "submitting", "submitted")
SERVICES = ("anpr", "appio", "pagopa", "spid")  # the whole platform: the gateway's fuzz runs on it too
# The default suite runs one smoke of both scenarios at once; `make resilience` (RESILIENCE_FULL=1)
# runs each in full at RESILIENCE_RECIPIENTS (10,000 there).
FULL = os.environ.get("RESILIENCE_FULL") == "1"
SIZE = int(os.environ.get("RESILIENCE_RECIPIENTS", 10_000 if FULL else 40))
# The broken-twins scenario runs at IO's pace under a fifth of 429s (each pauses the key, as IO asks):
# about 4 citizens/s here, so its full size is smaller (RESILIENCE_FAULTS_RECIPIENTS).
FAULTS_SIZE = int(os.environ.get("RESILIENCE_FAULTS_RECIPIENTS", min(SIZE, 2_000)))
# IO's limit for the run: a tight one in the smoke, so the limiter works at it and the faults land
# mid-delivery; the full run is bound by the platform's own pace (about 30 messages/s on 2 cores),
# so there the twin's limit is set above it.
IO_LIMIT = os.environ.get("RESILIENCE_IO_LIMIT", "1500/5" if SIZE > 1000 else "30/2")
BAD_ROWS = ["RSSMRA85T10A562X;Famiglia codice errato;10,00;31/03/2099;TARI 2099;",  # wrong check letter
            f"{OPERATOR};Famiglia scaduta;10,00;01/01/2001;TARI 2099;",  # due date in the past
            "VRDLGU70A01D150D;Famiglia senza importo;;31/03/2099;TARI 2099;"]  # no amount


def deliverable(fiscal_code: str) -> bool:
    profile = seed.profile_for(fiscal_code)
    return bool(profile and profile["sender_allowed"])


def bad_row_numbers(size: int) -> list[int]:
    """Where `campaign_csv` puts the bad rows (data rows numbered from 1)."""
    return [(size + 1) // 2 + k for k in range(len(BAD_ROWS))]


def campaign_csv(codes: list[str]) -> str:
    lines = ["codice_fiscale;nominativo;importo;scadenza;causale;iban"]
    lines += [f"{cf};Famiglia {n};{100 + n % 250},{n % 100:02d};31/03/2099;TARI 2099 rata unica;"
              for n, cf in enumerate(codes)]
    lines[len(lines) // 2:len(lines) // 2] = BAD_ROWS  # bad rows amid good ones: refused, nothing else lost
    return "\n".join(lines) + "\n"


@contextmanager
def private_servers() -> Iterator[tuple[PrivateRabbitMQ, PrivatePostgres]]:
    rabbit = PrivateRabbitMQ(Path(tempfile.mkdtemp(prefix="sportello-res-rmq-")))
    postgres = PrivatePostgres(Path(tempfile.mkdtemp(prefix="sportello-res-pg-")))
    try:
        rabbit.start()
        postgres.start()
        yield rabbit, postgres
    finally:
        try:
            rabbit.close()
        finally:
            postgres.close()


@contextmanager
def campaign_platform(work: Path, rabbit: PrivateRabbitMQ, postgres: PrivatePostgres, *, io_limit: str,
                      env: dict[str, str] | None = None, appio_twin: dict[str, str] | None = None,
                      gpd_twin: dict[str, str] | None = None) -> Iterator[Platform]:
    """Every service, the gateway and every twin; the GPD twin is the one with random faults."""
    count, _, window = io_limit.partition("/")
    variables = {"SPORTELLO_APPIO_RATE_LIMIT": count, "SPORTELLO_APPIO_RATE_WINDOW_SECONDS": window,
                 "SPORTELLO_APPIO_POLL_SECONDS": "0.2", "SPORTELLO_APPIO_STATUS_POLL_SECONDS": "0.5",
                 "SPORTELLO_APPIO_BACKOFF_SECONDS": "0.5", "SPORTELLO_APPIO_BACKOFF_CAP_SECONDS": "10",
                 **(env or {})}
    twins = {"appio": {"APPIO_TWIN_RATE_LIMIT": io_limit, "APPIO_TWIN_PROCESSING_SECONDS": "0.2",
                       **(appio_twin or {})},
             "gpd": dict(gpd_twin or {})}
    with start_platform(work, services=SERVICES, env=variables, twin_env=twins,
                        amqp_uri=rabbit.amqp_uri, database_admin_url=postgres.admin_url,
                        twin_modules={"gpd": "tests.resilience.faulty_gpd"}, timeout=180) as platform:
        yield platform


@dataclass
class Campaign:
    """One uploaded campaign and what the run did to the platform while it ran."""

    platform: Platform
    codes: list[str]
    campaign_id: str = ""
    started: float = field(default_factory=time.monotonic)
    events: list[str] = field(default_factory=list)
    settled: dict[str, int] = field(default_factory=lambda: {"marked_sent": 0, "resent": 0})
    before: dict[str, Any] = field(default_factory=dict)  # the twins and dead letters before the upload

    @property
    def deliverable(self) -> set[str]:
        return {cf for cf in self.codes if deliverable(cf)}

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s {what} (gpd {self.gpd_positions()}, io {self.io_messages()})"
        self.events.append(line)
        print("  " + line, flush=True)

    # -- driving it ----------------------------------------------------------------------------
    def upload(self) -> dict[str, Any]:
        platform = self.platform
        self.before = {"gpd": self.gpd(f"/__resilience/debtors/{ORG}"), "io": self.io("/__admin/counts")["messages"],
                       "dead": self.dead_letters()}
        response = httpx.post(platform.url(BASE), params={"name": "TARI 2099 resilienza"},
                              content=campaign_csv(self.codes).encode(), timeout=300,
                              headers={**platform.auth(OPERATOR, ("operator",)), "Content-Type": "text/csv"})
        assert response.status_code == 201, response.text
        view: dict[str, Any] = response.json()
        self.campaign_id = view["campaign_id"]
        self.started = time.monotonic()
        return view

    def progress(self) -> dict[str, Any]:
        answer = httpx.get(self.platform.url(f"{BASE}/{self.campaign_id}"), timeout=30,
                           headers=self.platform.auth(OPERATOR, ("operator",)))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    # -- the twins' view ------------------------------------------------------------------------
    def gpd(self, path: str) -> Any:
        return httpx.get(f"{self.platform.twins['gpd']}{path}", timeout=120).json()

    def io(self, path: str) -> Any:
        return httpx.get(f"{self.platform.twins['appio']}{path}", timeout=120).json()

    def gpd_positions(self) -> int:
        try:
            return sum(self.gpd(f"/__resilience/debtors/{ORG}").values())
        except httpx.HTTPError:
            return -1

    def io_messages(self) -> int:
        try:
            return sum(self.io("/__admin/counts")["messages"].values())
        except httpx.HTTPError:
            return -1

    def dead_letters(self) -> dict[str, int]:
        return {s: self.platform.rows(s, "SELECT count(*) AS n FROM dead_letters")[0].n for s in ("pagopa", "appio")}

    def states(self) -> dict[str, int]:
        return {r.state: int(r.n) for r in self.platform.rows(
            "appio", "SELECT state, count(*) AS n FROM appio_messages WHERE kind = 'payment_notice' "
                     "AND campaign_id = :c GROUP BY state", c=self.campaign_id)}

    def run_until_final(self, timeout: float, during: list[tuple[str, Callable[[], bool], Callable[[], None]]]
                        | None = None) -> float:
        """Wait until every position is made and every message final, doing each fault of `during`
        once when its condition holds (in order); seconds taken."""
        pending = list(during or [])
        deadline = time.monotonic() + timeout
        valid = len(self.codes)
        last_report = time.monotonic()
        while True:
            while pending and pending[0][1]():
                name, _when, action = pending.pop(0)
                self.note(f"{name} ...")
                action()
                self.note(f"{name} done")
            try:
                states = self.states()
                made = sum(states.values())
            except Exception:
                states, made = {}, -1
            if not pending and made == valid and not any(states.get(s) for s in ACTIVE):
                return time.monotonic() - self.started
            if time.monotonic() > deadline:
                raise AssertionError(f"not final after {timeout}s: {made} of {valid} messages recorded, {states}; "
                                     f"faults not yet done: {[p[0] for p in pending]}")
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                self.note(f"waiting: {states}")
            time.sleep(0.3)

    def settle_in_doubt(self) -> None:
        """What an operator does with each in-doubt message (ADR 0007): IO holds it -> mark sent with
        its id; IO does not -> resend, confirmed. Then the campaign runs on to final again."""
        for _round in range(10):
            rows = self.platform.rows("appio", "SELECT id, recipient_fiscal_code FROM appio_messages WHERE kind = "
                                               "'payment_notice' AND campaign_id = :c AND state = 'in_doubt'",
                                      c=self.campaign_id)
            if not rows:
                return
            with self.platform.rpc(timeout=60) as cluster:
                for row in rows:
                    held = self.io(f"/__admin/messages?fiscal_code={row.recipient_fiscal_code}")
                    for attempt in range(20):  # IO's status read may meet an injected fault too
                        try:
                            if held:
                                cluster.appio.resolve_in_doubt("cremona", row.id, "mark_sent", OPERATOR,
                                                               io_message_id=held[0]["id"])
                            else:
                                cluster.appio.resolve_in_doubt("cremona", row.id, "resend", OPERATOR, confirm=True)
                            break
                        except Exception:
                            if attempt == 19:
                                raise
                            time.sleep(0.5)
                    self.settled["marked_sent" if held else "resent"] += 1
            self.run_until_final(timeout=600)
        raise AssertionError("in-doubt messages still there after ten rounds of settling")

    # -- the verdict ------------------------------------------------------------------------------
    def assert_exactly_once(self) -> dict[str, Any]:
        """Every valid row one position at GPD; every deliverable citizen one IO message, others none."""
        codes, deliverable_codes, ours = self.codes, self.deliverable, set(self.codes)
        held = self.gpd(f"/__resilience/debtors/{ORG}")
        wrong_positions = {cf: held.get(cf, 0) for cf in codes if held.get(cf, 0) != 1}
        extra_positions = {cf: n for cf, n in held.items()
                           if cf not in ours and n != self.before["gpd"].get(cf, 0)}
        messages = self.io("/__admin/counts")["messages"]
        wrong_messages = {cf: messages.get(cf, 0) for cf in codes
                          if messages.get(cf, 0) != (1 if cf in deliverable_codes else 0)}
        extra_messages = {cf: n for cf, n in messages.items()
                          if cf not in ours and n != self.before["io"].get(cf, 0)}
        progress = self.progress()
        states = self.states()
        outbox = self.platform.rows("pagopa", "SELECT count(*) AS n FROM outbox WHERE event_type LIKE :t "
                                              "AND body LIKE :c", t="%payment.position.created%",
                                    c=f"%{self.campaign_id}%")[0].n
        dead = {s: n - self.before["dead"][s] for s, n in self.dead_letters().items()}  # during this campaign
        summary = {"recipients": len(codes), "deliverable": len(deliverable_codes),
                   "gpd_positions": sum(held.values()), "io_messages": sum(messages.values()),
                   "campaign": progress["counts"], "appio_states": states, "events": outbox, "dead_letters": dead,
                   "settled": dict(self.settled)}
        print(f"  verdict: {summary}", flush=True)
        assert not wrong_positions and not extra_positions, (
            f"GPD: {len(wrong_positions)} citizens without exactly one position, e.g. "
            f"{list(wrong_positions.items())[:5]}; positions for others {list(extra_positions.items())[:5]}")
        assert not wrong_messages and not extra_messages, (
            f"IO: {len(wrong_messages)} citizens with a wrong number of messages, e.g. "
            f"{list(wrong_messages.items())[:5]}; messages to others {list(extra_messages.items())[:5]}")
        assert progress["status"] == "done"
        assert progress["counts"] == {"invalid": len(BAD_ROWS), "pending": 0, "created": len(codes), "failed": 0}
        assert states.get("sent", 0) == len(deliverable_codes), states
        assert states.get("not_deliverable", 0) == len(codes) - len(deliverable_codes), states
        assert outbox == len(codes), f"{outbox} payment.position.created events for {len(codes)} positions"
        assert dead == {"pagopa": 0, "appio": 0}, f"dead letters: {dead}"
        return summary


def wait_service(platform: Platform, name: str) -> None:
    """Until a restarted service answers (RPC health; the gateway: its OpenAPI over HTTP)."""
    def up() -> bool:
        try:
            if name == "gateway":
                return httpx.get(platform.url("/v1/openapi.json"), timeout=5).status_code == 200
            with platform.rpc(timeout=5) as cluster:
                return bool(getattr(cluster, name).health()["status"] == "ok")
        except Exception:
            return False
    wait_for(up, timeout=180, interval=0.5, what=f"{name} back up")


def kill9_and_restart(platform: Platform, name: str) -> Callable[[], None]:
    def action() -> None:
        process = platform.processes[name]
        process.kill9()
        process.start()
        wait_service(platform, name)
    return action


def run_seconds() -> Callable[[], float]:
    started = time.monotonic()
    return lambda: time.monotonic() - started
