"""Ports: what the pagopa service needs from the outside, as interfaces.

Why: the application code talks to GPD through `GpdPort`; the real adapter
(`adapters/gpd.py`) speaks the official OpenAPI, unit tests use a fake, and the sandbox twin
(`sandbox/gpd`) lets the whole platform run without pagoPA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.pagopa.domain.positions import PaymentPosition
from services.pagopa.domain.reporting import FlowRef
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


@dataclass(frozen=True)
class ReceiptSummary:
    """One line of GPD's receipts list (`GET /payments/{org}/receipts`)."""

    iuv: str
    paid_at: str | None


class GpdReceiptsPort(Protocol):
    """GPD's receipts API (gpd_payments.json): the other path by which receipts reach us."""

    def list_receipts(self, tenant: Tenant, *, since: str, page: int, page_size: int
                      ) -> tuple[list[ReceiptSummary], int]:
        """(receipts of the page, total pages); none at all is ([], 0)."""
        ...

    def get_receipt(self, tenant: Tenant, iuv: str) -> bytes | None:
        """The receipt XML (paSendRT(V2)Req) of one IUV, None if GPD has none."""
        ...


@dataclass(frozen=True)
class CartNotice:
    notice_number: str
    fiscal_code: str
    amount_cents: int
    company_name: str
    description: str


@dataclass(frozen=True)
class ReturnUrls:
    ok: str
    cancel: str
    error: str
    waiting: str


class CheckoutPort(Protocol):
    """pagoPA Checkout carts (v2): where to send the citizen to pay these notices."""

    def start_cart(self, tenant: Tenant, notices: list[CartNotice], urls: ReturnUrls, *,
                   email: str | None = None, cart_id: str | None = None) -> str:
        """The Checkout URL (the `Location` of Checkout's 302)."""
        ...


class NodoReportingPort(Protocol):
    """The Nodo's reporting-flow service (nodeForPa): which flows there are, and one flow's XML."""

    def configured(self, tenant: Tenant) -> bool:
        """Whether this Comune is set up to ask the Nodo (endpoint and station password)."""
        ...

    def list_flows(self, tenant: Tenant) -> Sequence[FlowRef]:
        ...

    def get_flow(self, tenant: Tenant, flow_id: str) -> bytes:
        """The FlussoRiversamento XML of one flow."""
        ...
