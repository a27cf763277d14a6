"""`python -m sandbox.cie_op`: serve the CIE OP + trust anchor twin (port SANDBOX_CIE_OP_PORT, default 8107).

Keys: CIE_TA_TWIN_KEY, CIE_OP_TWIN_FEDERATION_KEY, CIE_OP_TWIN_CORE_KEY in SPORTELLO_SECRETS_DIR
(created when missing). Federation members the trust anchor vouches for: SANDBOX_CIE_RPS,
comma-separated RP entity ids (default: Cremona's on the local gateway). SANDBOX_CIE_INTERMEDIATE=1
puts the OP under an intermediate authority (`/ia`, key CIE_IA_TWIN_KEY): a two-hop chain.
SANDBOX_CIE_REQUIRE_RP_TRUST_MARK=1: the OP admits only RPs showing the anchor's RP trust mark.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from werkzeug.serving import run_simple

from sandbox.cie_op import PORT
from sandbox.cie_op.app import CieOpTwin
from sandbox.cie_op.provider import Federation
from sandbox.secrets import _private_key_pem


def _key(folder: Path, name: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(_private_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                        encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8")


def _fetch(url: str) -> str:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.text


def main() -> None:
    port = int(os.environ.get("SANDBOX_CIE_OP_PORT", PORT))
    base = os.environ.get("SANDBOX_CIE_OP_URL", f"http://127.0.0.1:{port}").rstrip("/")
    folder = Path(os.environ.get("SPORTELLO_SECRETS_DIR", ".run/secrets"))
    rps = [u.strip().rstrip("/") for u in os.environ.get(
        "SANDBOX_CIE_RPS", "http://127.0.0.1:8080/v1/tenants/cremona/auth/cie").split(",") if u.strip()]
    federation = Federation(base=base, ta_key=_key(folder, "CIE_TA_TWIN_KEY"),
                            op_federation_key=_key(folder, "CIE_OP_TWIN_FEDERATION_KEY"),
                            op_core_key=_key(folder, "CIE_OP_TWIN_CORE_KEY"), members=tuple(rps),
                            intermediate=os.environ.get("SANDBOX_CIE_INTERMEDIATE") == "1",
                            ia_key=_key(folder, "CIE_IA_TWIN_KEY"),
                            require_rp_trust_mark=os.environ.get("SANDBOX_CIE_REQUIRE_RP_TRUST_MARK") == "1")
    run_simple("127.0.0.1", port, CieOpTwin(federation, _fetch), threaded=True)


if __name__ == "__main__":
    main()
