"""nameko entrypoints of the `pagopa` service (thin: they translate and delegate)."""

from sportello.edge.service import PlatformService


class PagoPAService(PlatformService):
    """pagoPA: debt positions, notices, receipts, reconciliation, campaigns."""

    name = "pagopa"
