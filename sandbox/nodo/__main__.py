"""`python -m sandbox.nodo`: serve the Nodo twin (port SANDBOX_NODO_PORT, default 8109).

SANDBOX_NODO_STATION_URL: our station (default the gateway's, http://127.0.0.1:8080/v1/pagopa/paForNode);
SANDBOX_NODO_GPD_URL: the GPD twin, told about each receipt so its receipts API lists it too
(default http://127.0.0.1:8101; empty to switch off);
SANDBOX_NODO_FLOW_SECONDS: every how many seconds the PSPs settle what was paid into reporting flows
(default 60; 0: only when asked, `POST /__twin/flows`).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from werkzeug.serving import run_simple

from sandbox.nodo import PORT
from sandbox.nodo.app import NodoTwin, passwords_from_tenant_files, stations_from_tenant_files


def _settle_every(twin: NodoTwin, seconds: float) -> None:
    while True:
        time.sleep(seconds)
        twin.publish_flows()


def main() -> None:
    port = int(os.environ.get("SANDBOX_NODO_PORT", PORT))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    twin = NodoTwin(
        station_url=os.environ.get("SANDBOX_NODO_STATION_URL", "http://127.0.0.1:8080/v1/pagopa/paForNode"),
        stations=stations_from_tenant_files(),
        gpd_url=os.environ.get("SANDBOX_NODO_GPD_URL", "http://127.0.0.1:8101") or None,
        passwords=passwords_from_tenant_files(),
    )
    every = float(os.environ.get("SANDBOX_NODO_FLOW_SECONDS", "60"))
    if every > 0:
        threading.Thread(target=_settle_every, args=(twin, every), daemon=True, name="nodo-flows").start()
    run_simple("127.0.0.1", port, twin, threaded=True)


if __name__ == "__main__":
    main()
