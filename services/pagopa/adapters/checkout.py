"""pagoPA Checkout "EC" carts API v2 over HTTP (`shared/specs/pagopa/checkout/checkout_v2.json`).

Why: online payment starts by posting a cart (1-5 notices) to Checkout, which answers 302 with the
page to send the citizen to. Redirects are *not* followed (the Location is the product); 5xx,
timeouts and broken connections are retried briefly with back-off; a 302 without Location or any
other answer is a typed error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from services.pagopa.domain.errors import CheckoutUnavailable
from services.pagopa.ports import CartNotice, ReturnUrls
from sportello.errors import ValidationFailed
from sportello.httpclient import metered_client
from sportello.tenants import Tenant

log = structlog.get_logger("pagopa.checkout")


def cart_payload(notices: list[CartNotice], urls: ReturnUrls, *, email: str | None, cart_id: str | None
                 ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "paymentNotices": [{"noticeNumber": n.notice_number, "fiscalCode": n.fiscal_code, "amount": n.amount_cents,
                            "companyName": n.company_name[:140], "description": n.description[:140]}
                           for n in notices],
        "returnUrls": {"returnOkUrl": urls.ok, "returnCancelUrl": urls.cancel, "returnErrorUrl": urls.error,
                       "returnWaitingUrl": urls.waiting},
    }
    if email:
        body["emailNotice"] = email
    if cart_id:
        body["idCart"] = cart_id
    return body


class HttpCheckout:
    def __init__(self, *, client: httpx.Client | None = None, attempts: int = 3, backoff_seconds: float = 0.3,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client or metered_client("checkout", timeout=10.0, follow_redirects=False)
        self.attempts = attempts
        self.backoff = backoff_seconds
        self._sleep = sleep

    def start_cart(self, tenant: Tenant, notices: list[CartNotice], urls: ReturnUrls, *,
                   email: str | None = None, cart_id: str | None = None) -> str:
        assert tenant.pagopa is not None
        if not 1 <= len(notices) <= 5:
            raise ValidationFailed("a Checkout cart holds 1 to 5 notices")
        url = str(tenant.pagopa.checkout_base_url).rstrip("/") + "/carts"
        key = tenant.pagopa.checkout_subscription_key
        headers = {"Ocp-Apim-Subscription-Key": key.get_secret_value()} if key else {}
        body = cart_payload(notices, urls, email=email, cart_id=cart_id)
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            else:
                if response.status_code == 302:
                    location: str | None = response.headers.get("Location")
                    if not location:
                        raise CheckoutUnavailable("Checkout answered 302 without a Location")
                    return location
                if response.status_code < 500:
                    log.warning("checkout_refused_cart", tenant=tenant.id, status=response.status_code)
                    raise CheckoutUnavailable(f"Checkout refused the cart: HTTP {response.status_code}")
                reason = str(response.status_code)
            if attempt < self.attempts:
                self._sleep(self.backoff * 2 ** (attempt - 1))
        raise CheckoutUnavailable(f"Checkout did not answer usefully ({reason}) after {self.attempts} attempts")
