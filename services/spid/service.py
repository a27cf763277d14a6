"""nameko entrypoints of the `spid` service (thin: they translate and delegate)."""

from sportello.edge.service import PlatformService


class SpidService(PlatformService):
    """SPID and CIE login, gateway tokens."""

    name = "spid"
