"""Alembic migrations per service: the kernel branch plus the service's own branch, one database.

Why: every service owns its schema. The kernel's tables (outbox, inbox, dead letters) are one
migration branch shared by all; a service adds its own branch in
`services/<name>/migrations/versions/` (its first revision `depends_on="kernel_0001"`).
`python -m sportello.migrate <service>` upgrades the database named by the settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent
KERNEL_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(service: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(KERNEL_MIGRATIONS))
    locations = [KERNEL_MIGRATIONS / "versions"]
    own = ROOT / "services" / service / "migrations" / "versions"
    if own.is_dir():
        locations.append(own)
    config.set_main_option("version_locations", " ".join(str(p) for p in locations))
    config.set_main_option("path_separator", "space")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(service: str, url: str) -> None:
    command.upgrade(alembic_config(service, url), "heads")


def main(argv: list[str] | None = None) -> int:
    from sportello.settings import load_settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sportello.migrate <service>", file=sys.stderr)
        return 2
    settings = load_settings()
    upgrade(args[0], settings.database_url_for(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
