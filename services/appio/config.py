"""Tuning of the App IO service (`SPORTELLO_APPIO_*`), validated at start-up.

Defaults follow IO's limit (about 150 requests / 5 s per key) and a Comune's working day.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AppIOSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPORTELLO_APPIO_", extra="ignore", frozen=True)

    rate_limit: int = Field(default=150, ge=1, description="requests per window per subscription key")
    rate_window_seconds: float = Field(default=5.0, gt=0)
    rate_margin_seconds: float = Field(
        default=0.0, ge=0, le=5,
        description="optional extra seconds on the window (e.g. against a clock-rate drift at IO); not needed "
                    "for correctness: a call counts from before it leaves until its answer is back (ADR 0011)")
    rate_limiter: Literal["auto", "local", "shared"] = Field(
        default="auto",
        description="local: in this process (one replica per IO key); shared: in the service's PostgreSQL "
                    "database, one limit for every replica (ADR 0011); auto: shared on PostgreSQL, local on SQLite")
    concurrency: int = Field(default=16, ge=1, le=256, description="messages in flight at once")
    poll_seconds: float = Field(default=0.5, gt=0, le=60, description="how often due messages are looked for")
    lease_seconds: float = Field(default=120.0, gt=0, description="how long a worker owns a message")
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_seconds: float = Field(default=1.0, gt=0)
    backoff_cap_seconds: float = Field(default=300.0, gt=0)
    status_poll_seconds: float = Field(default=2.0, gt=0)
    follow_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlives_a_call(self) -> AppIOSettings:
        # A submission in flight must never look abandoned: two key attempts plus a window's wait.
        call = self.http_timeout_seconds + self.connect_timeout_seconds
        if self.lease_seconds <= 2 * call + self.rate_window_seconds:
            raise ValueError("lease_seconds must exceed 2 x (http + connect timeouts) + rate window")
        return self

    @property
    def max_call_seconds(self) -> float:
        """The longest one call can hold its limiter slot: the intent commit (bounded by a window here),
        pool + connect + write + read timeouts. A shared slot of a replica that died counts until then."""
        return self.rate_window_seconds + self.connect_timeout_seconds + 3 * self.http_timeout_seconds
