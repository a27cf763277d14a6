"""Checkout v2 carts: the cart our adapter posts and the twin's answers validate against
shared/specs/pagopa/checkout/checkout_v2.json; the adapter returns the 302's Location.
The spec's server URL is corrected in memory (see `adapter`)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from pydantic import SecretStr
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.checkout.app import CheckoutTwin
from services.pagopa.adapters.checkout import HttpCheckout
from services.pagopa.domain.errors import CheckoutUnavailable
from services.pagopa.ports import CartNotice, ReturnUrls
from sportello.tenants import Tenant
from tests.unit.pagopa.support import tenant

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "pagopa" / "checkout" / "checkout_v2.json"
HOST = "https://api.platform.pagopa.it"
URLS = ReturnUrls("https://portale.test/ok", "https://portale.test/annulla", "https://portale.test/errore",
                  "https://portale.test/attesa")
NOTICE = CartNotice("301000000000000141", "00297960197", 2500, "Comune di Cremona", "TARI 2027")


def keyed() -> Tenant:
    t = tenant()
    assert t.pagopa is not None
    return t.model_copy(update={"pagopa": t.pagopa.model_copy(
        update={"checkout_subscription_key": SecretStr("checkout-key")})})


def adapter(twin: CheckoutTwin, seen: list[int], *, strict: bool = True) -> HttpCheckout:
    """Our adapter talking to the twin; with `strict`, every request is validated against the spec."""
    document = json.loads(SPEC.read_text())
    # upstream writes the server as `https://${host}` (a `$` before the template variable), which
    # no OpenAPI tool expands: use its documented production value, the only change made
    assert document["servers"][0]["url"] == "https://${host}"
    document["servers"] = [{"url": f"{HOST}/checkout/ec/v2"}]
    spec = OpenAPI.from_dict(document)

    def handler(http_request: httpx.Request) -> httpx.Response:
        def environ() -> dict[str, object]:
            return EnvironBuilder(method="POST", base_url=HOST, path="/checkout/ec/v2/carts",
                                  headers={k: v for k, v in http_request.headers.items()
                                           if k.lower() not in ("host", "content-length")},
                                  data=http_request.content).get_environ()

        response = Response.from_app(twin, environ())
        werkzeug_request = Request(environ())
        if strict:
            spec.validate_request(WerkzeugOpenAPIRequest(werkzeug_request))
        if response.status_code in (302, 400):
            spec.validate_response(WerkzeugOpenAPIRequest(werkzeug_request), WerkzeugOpenAPIResponse(response))
        seen.append(response.status_code)
        return httpx.Response(response.status_code, content=response.get_data(), headers=dict(response.headers))

    return HttpCheckout(client=httpx.Client(transport=httpx.MockTransport(handler)), sleep=lambda _s: None)


def test_a_cart_gets_the_checkout_page() -> None:
    twin, seen = CheckoutTwin(public_url="https://checkout.test", keys=["checkout-key"]), []
    location = adapter(twin, seen).start_cart(keyed(), [NOTICE], URLS, email="mario@example.org", cart_id="c-1")
    assert location.startswith("https://checkout.test/c/") and seen == [302]
    [cart] = twin.carts.values()
    assert cart["paymentNotices"][0]["amount"] == 2500 and cart["returnUrls"]["returnWaitingUrl"].endswith("attesa")


def test_5xx_is_retried_and_a_refusal_is_typed() -> None:
    twin, seen = CheckoutTwin(public_url="https://checkout.test"), []
    twin.fault = {"status": 500, "count": 2}
    assert adapter(twin, seen).start_cart(keyed(), [NOTICE], URLS).startswith("https://checkout.test/c/")
    assert seen == [500, 500, 302]
    bad = CartNotice("3010", "00297960197", 2500, "Comune di Cremona", "TARI 2027")
    with pytest.raises(CheckoutUnavailable):
        adapter(twin, seen, strict=False).start_cart(keyed(), [bad], URLS)  # the twin refuses it as Checkout does
    assert seen[-1] == 400
    twin.fault = {"malformed": True, "count": 1}
    with pytest.raises(CheckoutUnavailable):
        adapter(twin, []).start_cart(keyed(), [NOTICE], URLS)
