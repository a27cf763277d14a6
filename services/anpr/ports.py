"""The national systems `anpr` talks to, as narrow interfaces (real adapters in adapters/, fakes in tests).

- `VoucherSource`: PDND's token endpoint — a voucher for a purpose, optionally bound to a digest.
- `ResidentRegistry`: ANPR's PDND e-services (E002 envelope: C001, C003, C030).
- `CertificateAuthority`: ANPR's web service 6001 (`emissioneCertificato`).
"""

from __future__ import annotations

from typing import Any, Protocol

from services.anpr.domain.eservices import EService
from services.anpr.domain.modi import AuditContext
from services.anpr.domain.ws6001 import CertificateOrder, IssuedDocument
from sportello.tenants import Tenant


class VoucherSource(Protocol):
    def voucher(self, tenant: Tenant, eservice: str, *, tracking_evidence: str | None) -> str:
        """A valid PDND voucher (access token) for the tenant's purpose of `eservice`."""


class ResidentRegistry(Protocol):
    def e002(self, tenant: Tenant, service: EService, body: dict[str, Any], audit: AuditContext) -> dict[str, Any]:
        """POST the `RichiestaE002` body; the `RispostaE002OK` body, or a typed error."""


class CertificateAuthority(Protocol):
    def issue(self, tenant: Tenant, order: CertificateOrder) -> IssuedDocument:
        """Ask WS 6001 for the certificate; the document ANPR returns, or a typed error."""
