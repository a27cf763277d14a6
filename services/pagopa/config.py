"""Tuning of the pagoPA service (`SPORTELLO_PAGOPA_*`), validated at start-up.

Why: GPD's quota is per subscription key and set by PagoPA when the key is issued (the sandbox twin,
like the published default, allows 100 calls / 10 s); a Comune granted more raises it here, and the
benchmarks turn it off to find the platform's own ceiling. The limiter is per process: one pagopa
replica per GPD key.
"""

from __future__ import annotations

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.pagopa.adapters.gpd import GPD_LIMIT, GPD_WINDOW_SECONDS


class PagoPASettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPORTELLO_PAGOPA_", extra="ignore", frozen=True)

    gpd_rate_limit: int = Field(default=GPD_LIMIT, ge=1, description="GPD calls per window per subscription key")
    gpd_rate_window_seconds: float = Field(default=GPD_WINDOW_SECONDS, gt=0, le=3600)


@cache
def settings() -> PagoPASettings:
    """The process's settings, read once (the provider reads them first, at start-up)."""
    return PagoPASettings()
