"""What the PDND catalogue says about ANPR's e-services, as the twins know it.

Written out literally (not computed like the client does), so a client that gets an audience
wrong is caught: the audience is the e-service's `MinInternoPortaANPR` name, not the
`MinInternoPortaANPR-PDND` URL it calls, and C001's name has an en dash.
"""

from __future__ import annotations

from dataclasses import dataclass

VAL = "https://modipa-val.anpr.interno.it/govway/rest/in/MinInternoPortaANPR"
PRODUCER_ID = "5e8a2f1c-0b7d-4c36-9a51-2f6d3e8b7c10"  # the Ministero dell'Interno as producer (synthetic)


@dataclass(frozen=True)
class CatalogueEntry:
    code: str
    segment: str
    audience: str
    eservice_id: str
    descriptor_id: str
    daily_quota: int
    voucher_lifetime: int = 600


ESERVICES: dict[str, CatalogueEntry] = {
    "C001": CatalogueEntry("C001", "C001\u2013servizioNotifica", f"{VAL}/C001\u2013servizioNotifica/v1",
                           "b1c2d3e4-0001-4a00-8000-000000000001", "d1c2d3e4-0001-4a00-8000-000000000001", 2000),
    "C003": CatalogueEntry("C003", "C003-servizioVerificaDichGeneralita",
                           f"{VAL}/C003-servizioVerificaDichGeneralita/v1",
                           "b1c2d3e4-0003-4a00-8000-000000000003", "d1c2d3e4-0003-4a00-8000-000000000003", 1000),
    "C030": CatalogueEntry("C030", "C030-servizioAccertamentoIdUnicoNazionale",
                           f"{VAL}/C030-servizioAccertamentoIdUnicoNazionale/v1",
                           "b1c2d3e4-0030-4a00-8000-000000000030", "d1c2d3e4-0030-4a00-8000-000000000030", 5000),
}
