"""`python -m sandbox.appio [port]`: serve the App IO twin on 127.0.0.1 (default PORT)."""

from __future__ import annotations

import logging
import os
import sys

from werkzeug.serving import make_server

from sandbox.appio import PORT
from sandbox.appio.server import IOTwin, state_from_env


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("APPIO_TWIN_PORT", PORT))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its request lines carry URLs with fiscal codes
    server = make_server("127.0.0.1", port, IOTwin(state_from_env()), threaded=True)
    print(f"App IO twin on http://127.0.0.1:{port}/api/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
