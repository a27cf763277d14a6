"""pagoPA's settings: GPD's quota per key defaults to the published 100 / 10 s, a wrong value stops start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.pagopa.config import PagoPASettings


def test_gpd_quota_defaults_to_100_per_10_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPORTELLO_PAGOPA_GPD_RATE_LIMIT", raising=False)
    monkeypatch.delenv("SPORTELLO_PAGOPA_GPD_RATE_WINDOW_SECONDS", raising=False)
    settings = PagoPASettings()
    assert (settings.gpd_rate_limit, settings.gpd_rate_window_seconds) == (100, 10.0)


def test_a_granted_quota_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPORTELLO_PAGOPA_GPD_RATE_LIMIT", "250")
    monkeypatch.setenv("SPORTELLO_PAGOPA_GPD_RATE_WINDOW_SECONDS", "5")
    settings = PagoPASettings()
    assert (settings.gpd_rate_limit, settings.gpd_rate_window_seconds) == (250, 5.0)


@pytest.mark.parametrize(("variable", "value"), [("SPORTELLO_PAGOPA_GPD_RATE_LIMIT", "0"),
                                                 ("SPORTELLO_PAGOPA_GPD_RATE_LIMIT", "many"),
                                                 ("SPORTELLO_PAGOPA_GPD_RATE_WINDOW_SECONDS", "-1")])
def test_a_wrong_quota_stops_start_up_naming_the_setting(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                         value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("SPORTELLO_PAGOPA_").lower()):
        PagoPASettings()
