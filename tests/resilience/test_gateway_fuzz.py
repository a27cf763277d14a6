"""The gateway fuzzed from its own OpenAPI (issue 8, scenario 3): no 5xx, every answer as documented.

Schemathesis (pinned in pyproject.toml) reads `/v1/openapi.yaml` from the running gateway and
sends generated requests — valid and invalid, every operation — with an operator's token and
the tenant fixed to `cremona` (so the requests get past authorisation into the routes), and
checks each answer: not a server error, a documented status code, content type, headers and
body schema. The default suite runs a few examples per operation; `make resilience` runs
RESILIENCE_FUZZ_EXAMPLES (100) with the coverage phase too.

What it found, now fixed and kept by tests: a NUL inside a JSON string reaching PostgreSQL, an
`offset` past PostgreSQL's bigint range, a non-string `document_base64` (test_bad_input.py: 500s)
and a malformed Checkout e-mail (tests/e2e/test_payments_receipts.py: a 502).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.resilience.campaign import FULL, OPERATOR
from tests.support.platform import Platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.resilience
EXAMPLES = int(os.environ.get("RESILIENCE_FUZZ_EXAMPLES", 100 if FULL else 2))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


def test_gateway_openapi_fuzz_finds_no_server_error_and_no_undocumented_answer(
        platform: Platform, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\ntenant = "cremona"\n')
    token = platform.token(OPERATOR, ("citizen", "operator", "admin"))
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run",
               platform.url("/v1/openapi.yaml"), "--url", platform.url(""),
               "-H", f"Authorization: Bearer {token}", "--checks", CHECKS,
               "--phases", "coverage,fuzzing" if FULL else "fuzzing", "--max-examples", str(EXAMPLES),
               "--generation-codec", "utf-8",
               "--exclude-path", "/v1/health",  # 503 "degraded" is its documented answer when a service is slow
               "--seed", "20261122", "--no-color",
               "--workers", "1",  # two crashed inside hypothesis (CPython 3.11 "AST constructor recursion depth")
               "--report", "junit", "--report-junit-path", str(tmp_path / "schemathesis.xml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False,
                            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    summary = result.stdout[result.stdout.find("SUMMARY"):] if "SUMMARY" in result.stdout else result.stdout
    print(summary[-3000:], flush=True)
    assert result.returncode == 0, (result.stdout[-6000:] + result.stderr[-2000:]).replace(token, "[token]")
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    cases = re.search(r"(\d+) generated", summary)
    assert selected and tested and cases, summary
    assert int(tested[1]) == int(selected[1]) >= 45, summary  # every operation selected was reached
    assert int(cases[1]) >= EXAMPLES * int(tested[1]) // 2, summary
    # and the platform is whole afterwards
    wait_for(lambda: httpx.get(platform.url("/v1/health"), timeout=10).status_code == 200, timeout=60,
             what="the platform healthy after the fuzz")
