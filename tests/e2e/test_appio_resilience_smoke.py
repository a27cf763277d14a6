"""The App IO resilience scenario, small (the full run: `python -m bench.appio_campaign resilience`).

240 citizens, a fifth of IO's answers broken (429s, 5xx, answers lost after IO created the
message), two appio replicas sharing the IO key and its limit, one killed with SIGKILL midway and
restarted; the in-doubt submissions settled as the back office would (ADR 0007). Asserted from
the twin's own counters: every deliverable citizen holds exactly one message, the others none,
and no window at the twin ever held more than the limit (nothing throttled by the twin's limit).
"""

from __future__ import annotations

import pytest

from bench.appio_campaign import Resilience, resilience

pytestmark = pytest.mark.e2e


def test_faults_and_a_kill_end_with_exactly_one_message_per_deliverable_citizen_within_the_limit() -> None:
    lines: list[str] = []
    # IO's 150 / 5 s scaled to 60 / 1 s, and short timeouts, back-offs and Retry-After: same arithmetic, ~35 s
    result = resilience(Resilience(recipients=240, limit=60, window=1.0, http_timeout=1.0, connect_timeout=0.5,
                                   lease=4.5, injected_timeout=1.5, retry_after=0.1, backoff=0.2, first=5000),
                        log=lines.append)
    report = "\n".join(lines)
    assert result["failures"] == [], report
    assert result["wrong"] == {}, report
    assert result["final"].get("sent") == result["deliverable"], report
    assert result["max_in_window"] <= 60 and result["throttled"] == 0, report
    assert result["injected"].get("timeout", 0) > 0 and result["injected"].get("500", 0) > 0, report
