"""`python -m sandbox.checkout`: serve the Checkout twin (port SANDBOX_CHECKOUT_PORT, default 8102).

SANDBOX_CHECKOUT_NODO_URL: the Nodo twin that plays the PSP when the citizen pays (default
http://127.0.0.1:8109; empty: the page only links back to the Comune).
"""

from __future__ import annotations

import logging
import os

from werkzeug.serving import run_simple

from sandbox.checkout import PORT
from sandbox.checkout.app import CheckoutTwin


def main() -> None:
    port = int(os.environ.get("SANDBOX_CHECKOUT_PORT", PORT))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    nodo_url = os.environ.get("SANDBOX_CHECKOUT_NODO_URL", "http://127.0.0.1:8109") or None
    run_simple("127.0.0.1", port, CheckoutTwin(public_url=f"http://127.0.0.1:{port}", nodo_url=nodo_url),
               threaded=True)


if __name__ == "__main__":
    main()
