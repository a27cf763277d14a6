"""nameko entrypoints of the `anpr` service (thin: they translate and delegate)."""

from sportello.edge.service import PlatformService


class AnprService(PlatformService):
    """ANPR: resident look-ups through PDND, registry certificates through web service 6001."""

    name = "anpr"
