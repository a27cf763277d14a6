"""Small runs of the gateway, notice and login benchmarks: they run end to end and measure something sane.

No timing assertions (the machines are shared): the real runs are `make bench-gateway`,
`make bench-notices`, `make bench-login`, with their figures in docs/benchmarks.md.
"""

from __future__ import annotations

import shutil

import pytest

from bench import gateway, login, notices

pytestmark = pytest.mark.e2e


def test_gateway_bench_measures_the_citizen_read_next_to_the_no_op_route_and_rpc() -> None:
    loadgen = "wrk" if shutil.which("wrk") else "httpx"
    summary = gateway.main(["--citizens", "4", "--positions", "2", "--duration", "1", "--connections", "1,4",
                            "--loadgen", loadgen, "--no-docs"])
    results = summary["results"]
    assert [r["route"] for r in results[1:]] == ["mine", "me", "rpc"] * 2
    assert results[0]["route"].startswith("RPC pagopa.list_positions")
    for r in results:
        assert r["requests"] > 0 and r["rps"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"], r
        # the RPC read may hit its deadline on a busy machine; the others never fail
        assert r["errors"] == 0 or (r["route"] == "rpc" and r["errors"] < r["requests"]), r
        if r["route"] in ("mine", "me", "rpc"):
            assert r["gateway_cpu_ms"] > 0, r
    # the read model answers without asking pagopa; the RPC read asks it every time
    assert all(r["pagopa_cpu_ms"] < 0.5 * next(x["pagopa_cpu_ms"] for x in results if x["route"] == "rpc")
               for r in results if r["route"] == "mine")
    at4 = next(r for r in results if r["route"] == "mine" and r["connections"] == 4)
    assert summary["rps_ratio"] == pytest.approx(at4["rps"] / 1000)
    assert summary["p99_ratio"] == pytest.approx(at4["p99_ms"] / 50)


def test_notice_bench_renders_real_pdfs_in_one_and_several_processes() -> None:
    result = notices.main(["--notices", "6", "--processes", "2", "--no-docs"])
    assert result["single"]["notices"] == 6 and result["parallel"]["notices"] == 6
    assert result["single"]["bytes"] > 1000  # a real PDF with an embedded QR image
    assert result["single"]["per_second"] > 0 and result["parallel"]["per_second"] > 0
    assert result["ratio"] == pytest.approx(result["parallel"]["per_second"] / 300)


def test_login_bench_validates_signed_responses_in_one_and_several_processes() -> None:
    result = login.main(["--responses", "6", "--processes", "2", "--no-docs"])
    assert result["single"]["responses"] == 6 and result["parallel"]["responses"] == 6
    assert result["single"]["per_second"] > 0 and result["parallel"]["per_second"] > 0
    assert result["ratio"] == pytest.approx(result["parallel"]["per_second"] / (72_179 / 3600))
