"""`python -m sandbox.gpd`: serve the GPD twin (port from SANDBOX_GPD_PORT, default 8101)."""

from __future__ import annotations

import os

from werkzeug.serving import run_simple

from sandbox.gpd import PORT
from sandbox.gpd.app import GpdTwin


def main() -> None:
    port = int(os.environ.get("SANDBOX_GPD_PORT", PORT))
    keys = [k for k in os.environ.get("SANDBOX_GPD_KEYS", "").split(",") if k]
    run_simple("127.0.0.1", port, GpdTwin(keys=keys or None), threaded=True)


if __name__ == "__main__":
    main()
