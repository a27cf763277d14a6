"""`python -m sandbox.spid_idp`: serve the SPID IdP twin (port SANDBOX_SPID_IDP_PORT, default 8106).

Keys: SPID_IDP_TWIN_KEY / SPID_IDP_TWIN_CERTIFICATE in SPORTELLO_SECRETS_DIR (created when
missing, so SPs that cached the twin's metadata keep trusting it across restarts).
Registered SPs: SANDBOX_SPID_SP_METADATA, comma-separated metadata URLs (default: Cremona's on
the local gateway), fetched when a request arrives.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from werkzeug.serving import run_simple

from sandbox.secrets import _private_key_pem, _self_signed
from sandbox.spid_idp import PORT
from sandbox.spid_idp.app import SpidIdpTwin
from sandbox.spid_idp.idp import Idp


def _keys(folder: Path) -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    key_file, cert_file = folder / "SPID_IDP_TWIN_KEY", folder / "SPID_IDP_TWIN_CERTIFICATE"
    if not key_file.exists() or not cert_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_text(_private_key_pem(key), encoding="utf-8")
        cert_file.write_text(_self_signed(key, "spid-idp-twin"), encoding="utf-8")
        key_file.chmod(0o600)
    return key_file.read_text(encoding="utf-8"), cert_file.read_text(encoding="utf-8")


def main() -> None:
    port = int(os.environ.get("SANDBOX_SPID_IDP_PORT", PORT))
    base = os.environ.get("SANDBOX_SPID_IDP_URL", f"http://127.0.0.1:{port}").rstrip("/")
    key, cert = _keys(Path(os.environ.get("SPORTELLO_SECRETS_DIR", ".run/secrets")))
    urls = os.environ.get("SANDBOX_SPID_SP_METADATA",
                          "http://127.0.0.1:8080/v1/tenants/cremona/auth/spid/metadata").split(",")

    def sp_metadata() -> list[bytes]:
        return [httpx.get(url.strip(), timeout=5.0).content for url in urls if url.strip()]

    twin = SpidIdpTwin(Idp(entity_id=base, base_url=base, key_pem=key, cert_pem=cert), sp_metadata)
    run_simple("127.0.0.1", port, twin, threaded=True)


if __name__ == "__main__":
    main()
