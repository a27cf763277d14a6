"""The city campaign benchmark, small (the full run: `make bench-city`, 33,000 households).

120 households through the whole platform: CSV upload at the gateway (three malformed rows amid
them), positions on the GPD twin, notices printed page by page, one IO message per deliverable
debtor, with both national limits scaled down so they bind within seconds. Asserted from the
twins' own counters (exactly one position per household, one message per deliverable one, none
to the others, no window over either limit, every notice rendered) and the time next to the
least the limits allow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.city_campaign import Limits, run

pytestmark = pytest.mark.e2e


def test_a_small_city_campaign_is_exact_at_the_twins_and_close_to_the_limits_minimum(tmp_path: Path) -> None:
    # GPD 2 calls / 2 s (6 bulk calls: at least 4 s); IO 40 requests / 2 s (336 requests: at least 16 s)
    limits = Limits(gpd=(2, 2.0), io=(40, 2.0))
    result = run(120, limits, tmp_path, first=7000)
    assert result["failures"] == [], result
    assert result["valid_rows"] == 120 and result["io_requests_made"] >= result["io_requests_needed"], result
    assert result["gpd_max_in_window"] <= 2 and result["io_max_in_window"] <= 40, result
    assert result["notice_pages"] == 1, result
    # small runs pay a fixed start (the first event's trip, the last status read) on a 16-s minimum
    assert 1.0 <= result["ratio"] <= 1.5, result
