"""Ports: what the pagopa service needs from the outside, as interfaces.

Why: the application code talks to GPD through `GpdPort`; the real adapter
(`adapters/gpd.py`) speaks the official OpenAPI, unit tests use a fake, and the sandbox twin
(`sandbox/gpd`) lets the whole platform run without pagoPA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.pagopa.domain.positions import PaymentPosition
from sportello.tenants import Tenant


@dataclass(frozen=True)
class GpdPosition:
    """What GPD says about one debt position."""

    iupd: str
    status: str  # GPD's own: DRAFT, PUBLISHED, VALID, INVALID, EXPIRED, PARTIALLY_PAID, PAID, REPORTED
    navs: tuple[str, ...] = ()


class GpdPort(Protocol):
    """Gestione Posizioni Debitorie, per tenant (subscription key, organisation fiscal code)."""

    def create(self, tenant: Tenant, position: PaymentPosition, *, publish: bool) -> GpdPosition:
        """Create (and publish); an already existing IUPD is fetched, never created twice."""
        ...

    def create_many(self, tenant: Tenant, positions: list[PaymentPosition], *, publish: bool) -> None:
        """v2 bulk create for campaigns; positions that already exist are not duplicated."""
        ...

    def get(self, tenant: Tenant, iupd: str) -> GpdPosition | None:
        ...

    def publish(self, tenant: Tenant, iupd: str) -> GpdPosition:
        ...

    def invalidate(self, tenant: Tenant, iupd: str) -> GpdPosition:
        ...

    def delete(self, tenant: Tenant, iupd: str) -> None:
        ...
