"""The Nodo's reporting-flow service (`nodeForPa.wsdl`) over HTTP/SOAP 1.1.

Why: reporting flows reach a Comune only when it asks the Nodo for them; this client lists the
flows of the tenant's domain and fetches one, with messages built and checked by
`domain.reporting` (pagoPA's XSD). Transport trouble and 5xx are retried briefly with back-off
and then are `NodoUnavailable`; a `PPT_*` fault or an answer that breaks the schema is
`NodoRejected` (our credentials or the request are wrong — retrying will not help).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import structlog

from services.pagopa.domain import reporting
from services.pagopa.domain.errors import NodoRejected, NodoUnavailable
from sportello.errors import ConfigurationError
from sportello.httpclient import metered_client
from sportello.tenants import Tenant

log = structlog.get_logger("pagopa.nodo")


class HttpNodoReporting:
    def __init__(self, *, client: httpx.Client | None = None, attempts: int = 3, backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client or metered_client("nodo", timeout=30.0)
        self.attempts = attempts
        self.backoff = backoff_seconds
        self._sleep = sleep

    @staticmethod
    def configured(tenant: Tenant) -> bool:
        return tenant.pagopa is not None and tenant.pagopa.nodo_base_url is not None \
            and tenant.pagopa.nodo_password is not None

    @staticmethod
    def _credentials(tenant: Tenant) -> reporting.Credentials:
        p = tenant.pagopa
        if p is None or p.nodo_base_url is None or p.nodo_password is None:
            raise ConfigurationError(f"tenant {tenant.id} has no pagopa.nodo_base_url / nodo_password")
        return reporting.Credentials(p.broker_id, p.station_id, p.nodo_password.get_secret_value(), tenant.fiscal_code)

    def _post(self, tenant: Tenant, operation: str, body: bytes) -> bytes:
        assert tenant.pagopa is not None and tenant.pagopa.nodo_base_url is not None
        url = str(tenant.pagopa.nodo_base_url)
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.client.post(url, content=body, headers={
                    "Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation})
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            else:
                if response.status_code < 500 or b"nodoChiedi" in response.content[:2048]:
                    return response.content
                reason = str(response.status_code)
            if attempt < self.attempts:
                self._sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("nodo_gave_up", tenant=tenant.id, operation=operation, reason=reason, attempts=self.attempts)
        raise NodoUnavailable(f"the Nodo did not answer usefully ({reason}) after {self.attempts} attempts")

    def list_flows(self, tenant: Tenant) -> list[reporting.FlowRef]:
        answer = self._post(tenant, reporting.LIST, reporting.list_request(self._credentials(tenant)))
        try:
            return reporting.read_list_response(answer)
        except reporting.NodoFault as exc:
            raise NodoRejected(f"the Nodo refused the list of flows: {exc.code}") from None
        except ValueError as exc:
            raise NodoRejected(f"the Nodo's list of flows is not valid: {exc}") from None

    def get_flow(self, tenant: Tenant, flow_id: str) -> bytes:
        answer = self._post(tenant, reporting.FETCH, reporting.fetch_request(self._credentials(tenant), flow_id))
        try:
            return reporting.read_fetch_response(answer)
        except reporting.NodoFault as exc:
            raise NodoRejected(f"the Nodo refused flow {flow_id}: {exc.code}") from None
        except ValueError as exc:
            raise NodoRejected(f"the Nodo's answer for flow {flow_id} is not valid: {exc}") from None
