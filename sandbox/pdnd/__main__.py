"""`python -m sandbox.pdnd`: serve the PDND twin (port SANDBOX_PDND_PORT, default 8104).

It knows the clients from the tenant files and their secrets (SPORTELLO_TENANTS_DIR,
SPORTELLO_SECRETS_DIR), as PDND knows the keys each Comune uploaded.
"""

from __future__ import annotations

import os

from werkzeug.serving import run_simple

from sandbox.pdnd import PORT
from sandbox.pdnd.app import PdndAuthority, PdndTwin
from sandbox.pdnd.tenants import load_sandbox_tenants


def main() -> None:
    port = int(os.environ.get("SANDBOX_PDND_PORT", PORT))
    authority = PdndAuthority.from_tenants(load_sandbox_tenants())
    run_simple("127.0.0.1", port, PdndTwin(authority), threaded=True)


if __name__ == "__main__":
    main()
