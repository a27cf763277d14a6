"""The tenants the PDND and ANPR twins know (their clients and keys), from the same files the platform reads."""

from __future__ import annotations

import os
from pathlib import Path

from sportello.tenants import SecretSource, TenantRegistry, load_tenants

ROOT = Path(__file__).resolve().parents[2]


def load_sandbox_tenants() -> TenantRegistry:
    tenants_dir = Path(os.environ.get("SPORTELLO_TENANTS_DIR", ROOT / "sandbox" / "tenants"))
    secrets_dir = Path(os.environ.get("SPORTELLO_SECRETS_DIR", ROOT / ".run" / "secrets"))
    return load_tenants(tenants_dir, SecretSource(secrets_dir=secrets_dir))
