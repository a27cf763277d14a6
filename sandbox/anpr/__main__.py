"""`python -m sandbox.anpr`: serve the ANPR twin (port SANDBOX_ANPR_PORT, default 8105).

PDND's voucher keys come from the PDND twin's JWKS (SANDBOX_PDND_URL, default
http://127.0.0.1:8104), fetched when first needed and again when a kid is unknown.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from werkzeug.serving import run_simple

from sandbox.anpr import PORT
from sandbox.anpr.app import AnprTwin
from sandbox.pdnd.tenants import load_sandbox_tenants


class RemoteJwks:
    def __init__(self, url: str, ttl: float = 300.0) -> None:
        self.url, self.ttl = url, ttl
        self._keys: dict[str, Any] | None = None
        self._at = 0.0

    def __call__(self) -> dict[str, Any]:
        if self._keys is None or time.monotonic() - self._at > self.ttl:
            self._keys = httpx.get(self.url, timeout=5.0).json()
            self._at = time.monotonic()
        return self._keys


def main() -> None:
    port = int(os.environ.get("SANDBOX_ANPR_PORT", PORT))
    pdnd = os.environ.get("SANDBOX_PDND_URL", "http://127.0.0.1:8104").rstrip("/")
    twin = AnprTwin.from_tenants(load_sandbox_tenants(), jwks=RemoteJwks(f"{pdnd}/.well-known/jwks.json"))
    twin.people.find("X")  # build the population before the first request
    run_simple("127.0.0.1", port, twin, threaded=True)


if __name__ == "__main__":
    main()
