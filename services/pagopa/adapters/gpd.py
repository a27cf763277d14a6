"""GPD (Gestione Posizioni Debitorie) over HTTP, to the official contract
(`shared/specs/pagopa/gpd/openapi_external_v1.json`, bulk: `..._v2.json`).

Why these choices:
- one subscription key per tenant (header `Ocp-Apim-Subscription-Key`), and GPD's limit of
  100 calls / 10 s per key kept by a shared `SlidingWindowLimiter` — we wait our turn instead of
  collecting 429s;
- retries with exponential back-off (tenacity) on 429 (honouring Retry-After, which also pauses
  the key for every caller), 5xx, timeouts and broken connections; anything else is final;
- 409 is understood, not an error: "already exists" is answered by fetching what is there, so
  a retried create never makes a second position.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.pagopa.domain.errors import GpdRejected, GpdUnavailable
from services.pagopa.domain.positions import PaymentPosition
from services.pagopa.ports import GpdPosition, ReceiptSummary
from sportello.httpclient import metered_client
from sportello.metrics import observed_sleep
from sportello.ratelimit import SlidingWindowLimiter, parse_retry_after
from sportello.tenants import Tenant

log = structlog.get_logger("pagopa.gpd")
GPD_LIMIT = 100
GPD_WINDOW_SECONDS = 10.0
ROME = ZoneInfo("Europe/Rome")
DEBT_POSITIONS = "debt-positions-service"
RECEIPTS_API = "payments-receipts-service"


def gpd_limiter(limit: int = GPD_LIMIT, window_seconds: float = GPD_WINDOW_SECONDS,
                **kwargs: Any) -> SlidingWindowLimiter:
    """GPD counts a call when it arrives. A margin on the window (0.1 s until 2026-11-22) did not make
    that safe: a call delayed on the way by more than the margin still met the next window's calls
    (`test_a_call_delayed_on_the_way_still_counts_in_its_window_at_gpd`). `HttpGpd` counts each call
    from before it leaves until its answer is back (ADR 0011), which needs no margin."""
    return SlidingWindowLimiter(limit, window_seconds, **kwargs)


def due_datetime(due: date) -> str:
    """GPD wants a date-time: the end of the due day, Rome time."""
    return datetime.combine(due, dtime(23, 59, 59), tzinfo=ROME).isoformat(timespec="milliseconds")


def position_payload(tenant: Tenant, position: PaymentPosition) -> dict[str, Any]:
    """`PaymentPositionModel` (v1) for one position with one payment option."""
    r = position.request
    transfers = []
    for t in r.transfers:
        item: dict[str, Any] = {
            "idTransfer": str(t.id_transfer), "amount": t.amount_cents, "organizationFiscalCode": tenant.fiscal_code,
            "remittanceInformation": t.remittance_information, "category": t.category,
        }
        if t.iban is not None:
            item["iban"] = t.iban
        if t.stamp is not None:
            item["stamp"] = {"hashDocument": t.stamp.hash_document, "stampType": t.stamp.stamp_type,
                             "provincialResidence": t.stamp.provincial_residence}
        transfers.append(item)
    return {
        "iupd": position.iupd,
        "type": r.debtor.kind,
        "fiscalCode": r.debtor.fiscal_code,
        "fullName": r.debtor.full_name,
        "companyName": tenant.name[:140],
        "switchToExpired": True,
        "paymentOption": [{
            "iuv": position.iuv,
            "amount": r.amount_cents,
            "description": r.description,
            "isPartialPayment": False,
            "dueDate": due_datetime(r.due_date),
            "transfer": transfers,
        }],
    }


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _parse_position(body: Any) -> GpdPosition:
    if not isinstance(body, dict) or not isinstance(body.get("iupd"), str):
        raise GpdRejected("GPD answered with a body that is not a debt position")
    navs = tuple(str(o.get("nav")) for o in body.get("paymentOption") or [] if isinstance(o, dict) and o.get("nav"))
    return GpdPosition(iupd=body["iupd"], status=str(body.get("status") or ""), navs=navs)


class HttpGpd:
    """The real GPD client (also used against the sandbox twin: same contract)."""

    def __init__(self, *, limiter: SlidingWindowLimiter | None = None, client: httpx.Client | None = None,
                 timeout: float = 10.0, max_attempts: int = 5, backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limiter = limiter or gpd_limiter(sleep=observed_sleep("gpd", sleep))
        self.client = client or metered_client("gpd", timeout=timeout)
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self._sleep = sleep

    # -- transport ------------------------------------------------------------------------
    @staticmethod
    def _base(tenant: Tenant, version: int, api: str = DEBT_POSITIONS) -> str:
        """The tenant's GPD base (`.../debt-positions-service/v1`); v2 for bulk; the receipts API
        lives beside it (`.../payments-receipts-service/v1`) under the same subscription."""
        assert tenant.pagopa is not None
        base = str(tenant.pagopa.gpd_base_url).rstrip("/")
        if version != 1 and base.endswith("/v1"):
            base = base[: -len("/v1")] + f"/v{version}"
        if api != DEBT_POSITIONS:
            base = base.replace(DEBT_POSITIONS, api)
        return base

    @staticmethod
    def _key(tenant: Tenant) -> tuple[str, str]:
        assert tenant.pagopa is not None
        secret = tenant.pagopa.gpd_subscription_key.get_secret_value()
        return secret, hashlib.sha256(secret.encode()).hexdigest()[:16]  # limiter key: never the secret itself

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return 0.0  # the limiter's pause makes acquire() wait exactly Retry-After
        return float(wait_exponential(multiplier=self.backoff, max=30)(state))

    def request(self, tenant: Tenant, method: str, path: str, *, version: int = 1, json: Any = None,
                params: dict[str, Any] | None = None, api: str = DEBT_POSITIONS) -> httpx.Response:
        """One logical call: rate-limited, retried on 429/5xx/timeouts; returns the final response."""
        secret, limiter_key = self._key(tenant)
        url = self._base(tenant, version, api) + path

        def attempt() -> httpx.Response:
            # counted from before it leaves until its answer is back: GPD counts arrivals, and one
            # delayed on the way must still fall in the window we counted it in (ADR 0011)
            with self.limiter.call(limiter_key):
                try:
                    response = self.client.request(method, url, json=json, params=params,
                                                   headers={"Ocp-Apim-Subscription-Key": secret})
                except httpx.TimeoutException:
                    raise _Retryable("timeout") from None
                except httpx.TransportError as exc:
                    raise _Retryable(type(exc).__name__) from None
            if response.status_code == 429:
                seconds = parse_retry_after(response.headers.get("Retry-After"))
                self.limiter.pause(limiter_key, seconds)
                raise _Retryable("429", retry_after=seconds)
            if response.status_code >= 500:
                raise _Retryable(str(response.status_code))
            return response

        retrying = Retrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait, sleep=self._sleep,
                            retry=retry_if_exception_type(_Retryable), reraise=True)
        try:
            return retrying(attempt)
        except _Retryable as exc:
            log.warning("gpd_gave_up", tenant=tenant.id, method=method, reason=exc.reason,
                        attempts=self.max_attempts)
            raise GpdUnavailable(f"GPD did not answer usefully ({exc.reason}) after {self.max_attempts} attempts") \
                from None

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise GpdRejected(f"GPD answered {response.status_code} with a body that is not JSON") from None

    @staticmethod
    def _reject(response: httpx.Response, what: str) -> GpdRejected:
        return GpdRejected(f"GPD refused to {what}: HTTP {response.status_code}")

    @staticmethod
    def _org(tenant: Tenant) -> str:
        return f"/organizations/{tenant.fiscal_code}/debtpositions"

    # -- GpdPort ----------------------------------------------------------------------------
    def create(self, tenant: Tenant, position: PaymentPosition, *, publish: bool) -> GpdPosition:
        response = self.request(tenant, "POST", self._org(tenant), json=position_payload(tenant, position),
                                params={"toPublish": str(publish).lower()})
        if response.status_code == 201:
            return _parse_position(self._json(response))
        if response.status_code == 409:
            existing = self.get(tenant, position.iupd)
            if existing is None:
                raise self._reject(response, "create the position (409 for an IUV used by another position)")
            log.info("gpd_position_already_there", tenant=tenant.id, position_id=position.id)
            if publish and existing.status == "DRAFT":
                return self.publish(tenant, position.iupd)
            return existing
        raise self._reject(response, "create the position")

    def create_many(self, tenant: Tenant, positions: list[PaymentPosition], *, publish: bool) -> None:
        if not positions:
            return
        body = {"paymentPositions": [position_payload(tenant, p) for p in positions]}
        response = self.request(tenant, "POST", self._org(tenant), version=2, json=body,
                                params={"toPublish": str(publish).lower()})
        if response.status_code == 201:
            return
        if response.status_code == 409:  # some exist already (a campaign resumed after a crash)
            self._resume_many(tenant, positions, publish=publish)
            return
        raise self._reject(response, "create the positions in bulk")

    def _resume_many(self, tenant: Tenant, positions: list[PaymentPosition], *, publish: bool) -> None:
        """After a bulk 409: one GET per position says which are there (a bulk call is all or nothing,
        so usually all of them are); the missing ones go in one more bulk call. Half the calls of
        "create each, 409, then GET it". A second 409 (an IUV held by another IUPD) falls back to
        one by one, where `create` names the culprit."""
        missing = []
        for position in positions:
            found = self.get(tenant, position.iupd)
            if found is None:
                missing.append(position)
            elif publish and found.status == "DRAFT":
                self.publish(tenant, position.iupd)
        log.info("gpd_bulk_resumed", tenant=tenant.id, existing=len(positions) - len(missing), missing=len(missing))
        if not missing:
            return
        body = {"paymentPositions": [position_payload(tenant, p) for p in missing]}
        response = self.request(tenant, "POST", self._org(tenant), version=2, json=body,
                                params={"toPublish": str(publish).lower()})
        if response.status_code == 201:
            return
        if response.status_code != 409:
            raise self._reject(response, "create the positions in bulk")
        for position in missing:
            self.create(tenant, position, publish=publish)

    def get(self, tenant: Tenant, iupd: str) -> GpdPosition | None:
        response = self.request(tenant, "GET", f"{self._org(tenant)}/{iupd}")
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            return _parse_position(self._json(response))
        raise self._reject(response, "read the position")

    def publish(self, tenant: Tenant, iupd: str) -> GpdPosition:
        response = self.request(tenant, "POST", f"{self._org(tenant)}/{iupd}/publish")
        if response.status_code == 200:
            return _parse_position(self._json(response))
        if response.status_code == 409:
            existing = self.get(tenant, iupd)
            if existing is not None and existing.status in ("PUBLISHED", "VALID"):
                return existing
        raise self._reject(response, "publish the position")

    def invalidate(self, tenant: Tenant, iupd: str) -> GpdPosition:
        response = self.request(tenant, "POST", f"{self._org(tenant)}/{iupd}/invalidate")
        if response.status_code == 200:
            return _parse_position(self._json(response))
        if response.status_code == 409:
            existing = self.get(tenant, iupd)
            if existing is not None and existing.status == "INVALID":
                return existing
        if response.status_code == 404:
            return GpdPosition(iupd=iupd, status="INVALID")  # nothing there to pay: already as good as invalid
        raise self._reject(response, "invalidate the position")

    def delete(self, tenant: Tenant, iupd: str) -> None:
        response = self.request(tenant, "DELETE", f"{self._org(tenant)}/{iupd}")
        if response.status_code in (200, 404):
            return
        raise self._reject(response, "delete the position")

    # -- GpdReceiptsPort ----------------------------------------------------------------------------
    def list_receipts(self, tenant: Tenant, *, since: str, page: int, page_size: int = 100
                      ) -> tuple[list[ReceiptSummary], int]:
        assert tenant.pagopa is not None
        response = self.request(tenant, "GET", f"/payments/{tenant.fiscal_code}/receipts", api=RECEIPTS_API,
                                params={"pageNum": page, "pageSize": page_size, "from": since,
                                        "segregationCodes": tenant.pagopa.segregation_code})
        if response.status_code == 404:
            return [], 0
        if response.status_code != 200:
            raise self._reject(response, "list the receipts")
        body = self._json(response)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise GpdRejected("GPD receipts answered with a body that is not PaymentsResult")
        items = [ReceiptSummary(iuv=str(r["iuv"]), paid_at=r.get("paymentDateTime"))
                 for r in body["results"] if isinstance(r, dict) and r.get("iuv")]
        return items, int(body.get("totalPages") or 0)

    def get_receipt(self, tenant: Tenant, iuv: str) -> bytes | None:
        assert tenant.pagopa is not None
        response = self.request(tenant, "GET", f"/payments/{tenant.fiscal_code}/receipts/{iuv}", api=RECEIPTS_API,
                                params={"segregationCodes": tenant.pagopa.segregation_code})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._reject(response, "read the receipt")
        return response.content
