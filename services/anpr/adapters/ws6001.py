"""ANPR web service 6001 over SOAP 1.1 (hand-built envelope, XSD-validated body; ADR 0008)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from services.anpr.adapters.http import send
from services.anpr.domain import ws6001
from services.anpr.domain.errors import AnprUnavailable
from services.anpr.domain.ws6001 import CertificateOrder, IssuedDocument
from sportello.errors import ConfigurationError
from sportello.httpclient import metered_client
from sportello.tenants import Tenant


class Ws6001Client:
    """A `CertificateAuthority` posting `Richiesta6001` to the tenant's WS 6001 endpoint."""

    def __init__(self, client: httpx.Client | None = None, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client or metered_client("anpr_ws6001", timeout=30.0)
        self._sleep = sleep

    def issue(self, tenant: Tenant, order: CertificateOrder) -> IssuedDocument:
        if tenant.pdnd is None:
            raise ConfigurationError(f"tenant {tenant.id} has no ANPR configuration (pdnd section)")
        envelope = ws6001.request_envelope(order)
        url = str(tenant.pdnd.anpr_ws6001_url)

        def make() -> httpx.Request:
            return self._client.build_request("POST", url, content=envelope, headers={
                "Content-Type": "text/xml; charset=utf-8", "SOAPAction": ws6001.SOAP_ACTION})

        response = send(self._client, make, sleep=self._sleep, what="ANPR WS 6001")
        if response.status_code not in (200, 500):  # SOAP 1.1 faults come with 500
            raise AnprUnavailable(f"ANPR WS 6001 answered HTTP {response.status_code}")
        return ws6001.read_response(response.content)
