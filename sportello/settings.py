"""Process settings, read from the environment once and validated at start-up.

Why: a service that starts with a wrong broker URL or a missing secret must die at once with a
clear message, not fail on the first citizen request. Nothing secret has a default here: the
broker URL carries credentials, so it must be given explicitly (the run command and the test
suite set it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sportello.errors import ConfigurationError

SERVICE_NAMES = ("anpr", "pagopa", "spid", "appio")


class Settings(BaseSettings):
    """Settings shared by every Sportello process (`SPORTELLO_*` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="SPORTELLO_", extra="ignore", frozen=True)

    amqp_uri: str = Field(description="RabbitMQ URL with credentials, e.g. amqp://user:pw@host:5672/")
    tenants_dir: Path = Field(description="folder of tenant configuration files (*.yaml)")
    secrets_dir: Path | None = Field(
        default=None, description="folder of mounted secret files; env vars SPORTELLO_SECRET_<NAME> win"
    )
    data_dir: Path = Field(default=Path("var"), description="where SQLite files live by default")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of this service's own database; SQLite file when unset"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    quorum_queues: bool = Field(default=False, description="declare durable queues as quorum queues")
    outbox_poll_seconds: float = Field(default=0.2, gt=0, le=60)
    outbox_batch_size: int = Field(default=200, gt=0, le=10_000)
    event_retry_delays_ms: tuple[int, ...] = Field(
        default=(1_000, 5_000, 30_000), description="back-off before each retry of a failed handler"
    )
    gateway_address: str = Field(default="127.0.0.1:8080", pattern=r"^[0-9A-Za-z.\-\[\]:]+:[0-9]{1,5}$")
    rpc_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retention_outbox_days: int = Field(default=7, ge=1, description="keep published outbox rows this long")
    retention_inbox_days: int = Field(default=30, ge=1, description="keep inbox claims (duplicate guard) this long")
    retention_dead_letters_days: int = Field(default=90, ge=1, description="keep replayed dead letters this long")

    @field_validator("amqp_uri")
    @classmethod
    def _amqp_scheme(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://", "pyamqp://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @field_validator("tenants_dir")
    @classmethod
    def _tenants_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"tenants folder {value} does not exist")
        return value

    @field_validator("event_retry_delays_ms")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(delay <= 0 for delay in value):
            raise ValueError("retry delays must be positive milliseconds")
        return value

    def database_url_for(self, service: str) -> str:
        """This service's database: the explicit URL, else a SQLite file of its own."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings, turning pydantic's report into one typed start-up error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"SPORTELLO_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
