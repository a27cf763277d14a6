"""PDND's token endpoint (`POST /token.oauth2`, specs/pdnd/authorizationServerApi.yml).

Why: one place builds the client assertion, posts it form-encoded and turns PDND's answers into
vouchers or typed errors (400 malformed assertion, 401 refused, 429 throttled); vouchers are cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from services.anpr.adapters.http import send
from services.anpr.domain.errors import AnprUnavailable, PdndRejected, PdndUnauthorized
from services.anpr.domain.pdnd import VoucherCache, client_assertion, sha256_hex, token_form
from sportello.errors import ConfigurationError
from sportello.httpclient import metered_client
from sportello.tenants import PdndConfig, Tenant


def _pdnd(tenant: Tenant) -> PdndConfig:
    if tenant.pdnd is None:
        raise ConfigurationError(f"tenant {tenant.id} has no pdnd section")
    return tenant.pdnd


def _problem_detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")[:300]
    return f"HTTP {response.status_code}"


class PdndVoucherClient:
    """A `VoucherSource` talking to the tenant's PDND token endpoint."""

    def __init__(self, client: httpx.Client | None = None, *, cache: VoucherCache | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self._client = client or metered_client("pdnd", timeout=10.0)
        self._cache = cache or VoucherCache(clock=clock)
        self._sleep = sleep
        self._clock = clock
        self.requests = 0  # how many vouchers were actually requested (the cache's effect, observable)

    def voucher(self, tenant: Tenant, eservice: str, *, tracking_evidence: str | None) -> str:
        config = _pdnd(tenant)
        try:
            purpose_id = config.purposes[eservice]
        except KeyError:
            raise ConfigurationError(f"tenant {tenant.id} has no PDND purpose for {eservice}") from None
        key = (tenant.id, purpose_id, sha256_hex(tracking_evidence) if tracking_evidence else "")
        return self._cache.get(key, lambda: self._obtain(config, purpose_id, tracking_evidence)).access_token

    def _obtain(self, config: PdndConfig, purpose_id: str, tracking_evidence: str | None) -> tuple[str, str, int]:
        def make() -> httpx.Request:
            assertion = client_assertion(
                client_id=config.client_id, key_id=config.key_id,
                private_key_pem=config.private_key.get_secret_value(), audience=config.assertion_audience,
                purpose_id=purpose_id, digest_of=tracking_evidence, now=self._clock())
            return self._client.build_request("POST", str(config.token_url),
                                              data=token_form(config.client_id, assertion),
                                              headers={"Accept": "application/json"})

        self.requests += 1
        response = send(self._client, make, sleep=self._sleep, what="PDND")
        if response.status_code == 400:
            raise PdndRejected(_problem_detail(response))
        if response.status_code in (401, 403):
            raise PdndUnauthorized(_problem_detail(response))
        if response.status_code != 200:
            raise AnprUnavailable(f"PDND answered {response.status_code}")
        try:
            body = response.json()
            token, token_type, expires_in = str(body["access_token"]), str(body["token_type"]), int(body["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise AnprUnavailable("PDND answered 200 with a malformed body") from None
        if token_type not in ("Bearer", "DPoP") or expires_in <= 0:
            raise AnprUnavailable("PDND answered 200 with an unusable voucher")
        return token, token_type, expires_in
