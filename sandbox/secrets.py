"""Throw-away secrets for the sandbox tenants, generated on this machine, never committed.

Why: no secret has a default and no private key lives in the repository; still, `make run`
must work on a fresh clone. This writes every `{secret: NAME}` the sandbox tenant files ask for
into a folder (keys for RSA names, random tokens otherwise), keeping files that already exist.
`python -m sandbox.secrets <folder>`
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TENANTS_DIR = Path(__file__).resolve().parent / "tenants"
# Installation-wide secrets (not per Comune), needed by the platform itself.
PLATFORM_SECRETS = ("GATEWAY_TOKEN_SIGNING_KEY",)


def secret_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"secret"}:
            return {str(node["secret"])}
        return set().union(*(secret_names(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(secret_names(v) for v in node)) if node else set()
    return set()


def _private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> str:
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sportello sandbox"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=730)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def generate(folder: Path, tenants_dir: Path = TENANTS_DIR) -> list[str]:
    """Create the missing secret files; returns the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    names: set[str] = set(PLATFORM_SECRETS)
    for path in sorted(tenants_dir.glob("*.yaml")):
        names |= secret_names(yaml.safe_load(path.read_text(encoding="utf-8")))
    written: list[str] = []
    keys: dict[str, rsa.RSAPrivateKey] = {}
    for name in sorted(names, key=lambda n: (n.endswith("_CERTIFICATE"), n)):  # keys before their certificates
        target = folder / name
        if target.exists():
            continue
        if name.endswith(("_KEY",)) and ("PRIVATE" in name or "SIGNING" in name):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            keys[name] = key
            value = _private_key_pem(key)
        elif name.endswith("_CERTIFICATE"):
            key_name = name.removesuffix("_CERTIFICATE") + "_KEY"
            key_file = folder / key_name
            key = keys.get(key_name) or serialization.load_pem_private_key(key_file.read_bytes(), None)  # type: ignore[assignment]
            value = _self_signed(key, "sportello.sandbox")
        elif name.endswith("_NODO_PASSWORD"):
            value = secrets.token_hex(6)  # the Nodo's stPassword: 8-15 characters
        elif name.endswith("_JWKS"):  # a pinned public JWKS (e.g. a trust anchor's): a throw-away key's
            from services.spid.domain.federation import public_jwk
            value = json.dumps({"keys": [public_jwk(_private_key_pem(
                rsa.generate_private_key(public_exponent=65537, key_size=2048)))]})
        else:
            value = secrets.token_hex(16)
        target.write_text(value, encoding="utf-8")
        target.chmod(0o600)
        written.append(name)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m sandbox.secrets <folder>", file=sys.stderr)
        raise SystemExit(2)
    created = generate(Path(sys.argv[1]))
    print(f"sandbox secrets: {len(created)} created in {sys.argv[1]}")
