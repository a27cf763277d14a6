"""nameko entrypoints of the `appio` service (thin: they translate and delegate)."""

from sportello.edge.service import PlatformService


class AppIOService(PlatformService):
    """App IO: profile checks and messages within IO's limits."""

    name = "appio"
