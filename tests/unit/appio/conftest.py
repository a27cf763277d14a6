"""Fixtures of the App IO unit tests: a migrated SQLite database, two tenants, a fake IO port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.appio import seed
from services.appio.domain.errors import IOApiError, IONotFound
from services.appio.domain.messages import MessageContent
from services.appio.ports import IOMessageStatus, Profile, ServiceKeys
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tenants import Tenant, TenantRegistry


def tenant(tenant_id: str, fiscal_code: str) -> Tenant:
    return Tenant.model_validate({
        "id": tenant_id, "name": f"Comune di {tenant_id.title()}", "fiscal_code": fiscal_code,
        "istat_code": "019036", "ipa_code": "c_d150",
        "appio": {"base_url": "http://127.0.0.1:8103/api/v1", "services": [
            {"name": "anagrafe", "service_id": "01SVCANAGRAFE", "primary_key": f"{tenant_id}-p1",
             "secondary_key": f"{tenant_id}-s1"},
            {"name": "tributi", "service_id": "01SVCTRIBUTI", "primary_key": f"{tenant_id}-p2"}]},
    })


@pytest.fixture
def tenants() -> TenantRegistry:
    return TenantRegistry({"cremona": tenant("cremona", "00297960197"), "lodi": tenant("lodi", "84507570152")})


@pytest.fixture
def appio_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'appio.sqlite3'}"
    upgrade("appio", url)
    database = Database(url)
    yield database
    database.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class FakeIO:
    """The IOServicesPort in memory: seeded profiles, scripted failures, a record of what was sent."""

    failures: dict[str, list[IOApiError]] = field(default_factory=dict)  # operation -> errors to raise next
    statuses: list[str] = field(default_factory=list)  # getMessage answers, then PROCESSED
    sent: list[tuple[str, str, MessageContent]] = field(default_factory=list)  # (limiter key, cf, content)
    calls: list[str] = field(default_factory=list)
    on_submit: Callable[[], Any] | None = None
    held: dict[str, str] = field(default_factory=dict)  # IO message id -> fiscal code: what IO holds

    def hold(self, fiscal_code: str) -> str:
        """A message IO holds although our submission's answer was lost; returns its IO id."""
        io_id = f"01IOLOST{len(self.held):018d}"
        self.held[io_id] = fiscal_code
        return io_id

    def _fail(self, operation: str) -> None:
        self.calls.append(operation)
        queue = self.failures.get(operation)
        if queue:
            raise queue.pop(0)

    def get_profile(self, keys: ServiceKeys, fiscal_code: str) -> Profile:
        self._fail("profile")
        profile = seed.profile_for(fiscal_code)
        if profile is None:
            raise IONotFound("citizen not on IO")
        return Profile(sender_allowed=bool(profile["sender_allowed"]),
                       preferred_languages=tuple(profile["preferred_languages"]))  # type: ignore[arg-type]

    def submit_message(self, keys: ServiceKeys, fiscal_code: str, content: MessageContent, *,
                       before_send: Callable[[], None] | None = None) -> str:
        if before_send is not None:
            before_send()
        if self.on_submit is not None:
            self.on_submit()
        self._fail("submit")
        self.sent.append((keys.limiter_key, fiscal_code, content))
        io_id = f"01IO{len(self.sent):022d}"
        self.held[io_id] = fiscal_code
        return io_id

    def get_message(self, keys: ServiceKeys, fiscal_code: str, io_message_id: str) -> IOMessageStatus:
        self._fail("status")
        if self.held.get(io_message_id) != fiscal_code:
            raise IONotFound("no such message on IO")
        return IOMessageStatus(self.statuses.pop(0) if self.statuses else "PROCESSED")


@pytest.fixture
def fake_io() -> FakeIO:
    return FakeIO()
