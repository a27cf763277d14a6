"""HTTP to the CIE federation (entity configurations, fetch endpoint, the OP's token and userinfo).

Why an adapter: the RP's rules stay pure; this maps transport trouble to typed errors (a busy or
down OP is a 503 with its Retry-After, never a stack trace) and bounds what it reads.
"""

from __future__ import annotations

import httpx

from services.spid.domain.errors import ProviderUnavailable
from sportello.httpclient import metered_client

MAX_BODY_BYTES = 256 * 1024


class HttpOidc:
    def __init__(self, timeout_seconds: float = 8.0, transport: httpx.BaseTransport | None = None) -> None:
        self.client = metered_client("cie", timeout=timeout_seconds, follow_redirects=False, transport=transport)

    def _answer(self, response: httpx.Response) -> tuple[int, str, str]:
        if response.status_code == 429 or response.status_code >= 500:
            retry = response.headers.get("Retry-After")
            raise ProviderUnavailable(f"the CIE provider answered {response.status_code}"
                                      + (f"; retry after {retry} s" if retry else ""))
        if len(response.content) > MAX_BODY_BYTES:
            raise ProviderUnavailable("the CIE provider sent an oversized answer")
        return response.status_code, response.headers.get("content-type", ""), response.text

    def get(self, url: str, *, bearer: str | None = None) -> tuple[int, str, str]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            return self._answer(self.client.get(url, headers=headers))
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"the CIE federation is unreachable ({type(exc).__name__})") from None

    def post_form(self, url: str, data: dict[str, str]) -> tuple[int, str, str]:
        try:
            return self._answer(self.client.post(url, data=data))
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"the CIE provider is unreachable ({type(exc).__name__})") from None
