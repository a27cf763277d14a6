"""Shared helpers of the pagopa unit tests: a tenant, a fake GPD (the port), a migrated SQLite DB."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from services.pagopa.domain.errors import GpdUnavailable
from services.pagopa.domain.positions import Debtor, PaymentPosition, PositionRequest, Transfer
from services.pagopa.ports import GpdPosition
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tenants import PagoPAConfig, Tenant, TenantRegistry

IBAN = "IT58A0503411400000000012345"
CITIZEN = "RSSMRA85T10A562S"
OTHER_CITIZEN = "VRDLGU70A01D150D"


def tenant(tenant_id: str = "cremona", *, key: str = "key-cremona", segregation: str = "01",
           gpd_url: str = "http://gpd.test/gpd/debt-positions-service/v1") -> Tenant:
    return Tenant(
        id=tenant_id, name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036", ipa_code="c_d150",
        pagopa=PagoPAConfig(segregation_code=segregation, broker_id="00297960197", station_id="00297960197_01",
                            ibans=(IBAN,), gpd_base_url=gpd_url, gpd_subscription_key=key,
                            checkout_base_url="http://checkout.test/checkout/ec/v2"),
    )


def registry(*tenants: Tenant) -> TenantRegistry:
    return TenantRegistry({t.id: t for t in (tenants or (tenant(),))})


def migrated(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'pagopa.sqlite3'}"
    upgrade("pagopa", url)
    return Database(url)


def request(*, amount: int = 1600, reference: str | None = None, debtor: str = CITIZEN,
            due: date = date(2099, 1, 31), purpose: str = "single") -> PositionRequest:
    return PositionRequest(description="Imposta di bollo", amount_cents=amount, due_date=due,
                           debtor=Debtor.of(debtor, "Mario Rossi"),
                           transfers=[Transfer(1, amount, "Imposta di bollo", iban=IBAN)],
                           purpose=purpose, reference=reference)  # type: ignore[arg-type]


@dataclass
class FakeGpd:
    """The GPD port in memory; `fail_next` makes the next calls raise as the real adapter would."""

    positions: dict[str, str] = field(default_factory=dict)  # iupd -> GPD status
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise GpdUnavailable("fake: GPD down")

    def create(self, tenant: Tenant, position: PaymentPosition, *, publish: bool) -> GpdPosition:
        self.calls.append(("create", position.iupd))
        self._maybe_fail()
        self.positions.setdefault(position.iupd, "VALID" if publish else "DRAFT")
        return GpdPosition(position.iupd, self.positions[position.iupd], (position.notice_number,))

    def create_many(self, tenant: Tenant, positions: list[PaymentPosition], *, publish: bool) -> None:
        for p in positions:
            self.create(tenant, p, publish=publish)

    def get(self, tenant: Tenant, iupd: str) -> GpdPosition | None:
        self.calls.append(("get", iupd))
        return GpdPosition(iupd, self.positions[iupd]) if iupd in self.positions else None

    def publish(self, tenant: Tenant, iupd: str) -> GpdPosition:
        self.calls.append(("publish", iupd))
        self._maybe_fail()
        self.positions[iupd] = "VALID"
        return GpdPosition(iupd, "VALID")

    def invalidate(self, tenant: Tenant, iupd: str) -> GpdPosition:
        self.calls.append(("invalidate", iupd))
        self._maybe_fail()
        self.positions[iupd] = "INVALID"
        return GpdPosition(iupd, "INVALID")

    def delete(self, tenant: Tenant, iupd: str) -> None:
        self.calls.append(("delete", iupd))
        self._maybe_fail()
        self.positions.pop(iupd, None)
