"""ANPR's PDND e-services over REST: voucher + ModI headers + E002 body, answers to typed errors.

Why: every call needs `Authorization: Bearer <voucher>`, `Digest` + `Agid-JWT-Signature`
(INTEGRITY_REST_02) and `Agid-JWT-TrackingEvidence` (AUDIT_REST_02) whose hash the voucher carries.
The tracking evidence of an operator is reused for a few minutes so its voucher can be reused too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from services.anpr.adapters.http import send
from services.anpr.adapters.pdnd import PdndVoucherClient
from services.anpr.domain import eservices, modi
from services.anpr.domain.errors import AnprUnavailable, UpstreamRateLimited
from services.anpr.domain.eservices import EService
from services.anpr.domain.modi import AuditContext
from services.anpr.ports import VoucherSource
from sportello.errors import ConfigurationError
from sportello.httpclient import metered_client
from sportello.tenants import Tenant

EVIDENCE_REUSE_MARGIN = 90  # seconds of validity an evidence must still have to be reused


class AnprRestClient:
    """A `ResidentRegistry` calling the real (or twin) ANPR e-services."""

    def __init__(self, client: httpx.Client | None = None, *, vouchers: VoucherSource | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self._client = client or metered_client("anpr", timeout=15.0)
        self._vouchers = vouchers or PdndVoucherClient(self._client, sleep=sleep, clock=clock)
        self._sleep = sleep
        self._clock = clock
        self._evidence: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _tracking_evidence(self, tenant: Tenant, service: EService, audit: AuditContext, audience: str) -> str:
        assert tenant.pdnd is not None
        key = (tenant.id, service.code, *audit.key())
        now = self._clock()
        with self._lock:
            cached = self._evidence.get(key)
            if cached and cached[1] - now > EVIDENCE_REUSE_MARGIN:
                return cached[0]
        evidence = modi.tracking_evidence(
            audit, client_id=tenant.pdnd.client_id, key_id=tenant.pdnd.key_id,
            private_key_pem=tenant.pdnd.private_key.get_secret_value(), audience=audience,
            purpose_id=tenant.pdnd.purposes[service.code], now=now)
        with self._lock:
            self._evidence[key] = (evidence, now + modi.TRACKING_LIFETIME_SECONDS)
        return evidence

    def e002(self, tenant: Tenant, service: EService, body: dict[str, Any], audit: AuditContext) -> dict[str, Any]:
        config = tenant.pdnd
        if config is None or service.code not in config.purposes:
            raise ConfigurationError(f"tenant {tenant.id} has no PDND purpose for {service.code}")
        audience = eservices.audience(config.anpr_audience_base, service)
        url = eservices.endpoint(str(config.anpr_base_url), service)
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        evidence = self._tracking_evidence(tenant, service, audit, audience)
        voucher = self._vouchers.voucher(tenant, service.code, tracking_evidence=evidence)

        def make() -> httpx.Request:
            digest, signature = modi.signature_header(
                payload, client_id=config.client_id, key_id=config.key_id,
                private_key_pem=config.private_key.get_secret_value(), audience=audience, now=self._clock())
            return self._client.build_request("POST", url, content=payload, headers={
                "Authorization": f"Bearer {voucher}",
                "Content-Type": modi.CONTENT_TYPE,
                "Accept": "application/json",
                "Digest": digest,
                "Agid-JWT-Signature": signature,
                "Agid-JWT-TrackingEvidence": evidence,
            })

        response = send(self._client, make, sleep=self._sleep, what=f"ANPR {service.code}")
        try:
            answer = response.json()
        except ValueError:
            raise AnprUnavailable(
                f"ANPR {service.code} answered {response.status_code} with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise AnprUnavailable(f"ANPR {service.code} answered with a body that is not an object")
        if response.status_code == 200:
            return answer
        if response.status_code in (400, 404):
            eservices.raise_for_errors(answer)
        if response.status_code == 429:
            raise UpstreamRateLimited(f"ANPR {service.code}: daily quota or rate limit reached")
        detail = str(answer.get("detail") or answer.get("title") or response.status_code)[:300]
        raise AnprUnavailable(f"ANPR {service.code} answered {response.status_code}: {detail}")
