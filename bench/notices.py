"""Payment-notice PDFs per second: one process, then every core (multiprocessing).

    python -m bench.notices [--notices 400] [--processes N] [--no-docs]

Renders single-notice PDFs (one position each, each with its own notice number and so its own QR
code) with the real code, `services.pagopa.notice.render_notices`, exactly as `pagopa.notice_pdf`
does for a citizen's download. First in this process, then split across `--processes` worker
processes (default: every core). There is no separate notice target in DESIGN.md; the figure is
compared with the campaign's end-to-end target (>= 300 positions/s with limits off, one notice per
position): a ratio >= 1 means rendering cannot be what holds a campaign back.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from datetime import date
from typing import Any

from bench.results import machine, now, write_section
from services.pagopa.domain.iuv import notice_for
from services.pagopa.domain.positions import Debtor, PaymentPosition, PositionRequest, Transfer
from services.pagopa.notice import render_notices

CAMPAIGN_TARGET = 300.0  # positions/s end to end with limits off (DESIGN.md); each one has a notice
IBAN = "IT58A0503411400000000012345"


def position(n: int) -> PaymentPosition:
    number = notice_for("01", n + 1)
    request = PositionRequest(description="TARI 2027 - rata unica", amount_cents=12_000 + n % 5000,
                              due_date=date(2099, 3, 31), debtor=Debtor.of("RSSMRA85T10A562S", f"Famiglia {n}"),
                              transfers=[Transfer(1, 12_000 + n % 5000, "TARI 2027", iban=IBAN)],
                              purpose="campaign")
    return PaymentPosition(id=f"p{n}", tenant="cremona", iupd=f"bench-{n}", iuv=number.iuv,
                           notice_number=number.notice_number, payee_fiscal_code="00297960197",
                           company_name="Comune di Cremona", request=request)


def render(first: int, count: int) -> tuple[int, int]:
    """Render `count` single-notice PDFs; returns (how many, total bytes)."""
    size = 0
    for n in range(first, first + count):
        pdf = render_notices([position(n)])
        if not pdf.startswith(b"%PDF"):
            raise RuntimeError("not a PDF")
        size += len(pdf)
    return count, size


def single(notices: int) -> dict[str, float]:
    render(10_000_000, 3)  # imports and fonts loaded before the clock starts
    started, cpu = time.perf_counter(), time.process_time()
    count, size = render(0, notices)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"notices": count, "seconds": elapsed, "per_second": count / elapsed, "bytes": size / count,
            "per_cpu_second": count / cpu}


def parallel(notices: int, processes: int) -> dict[str, float]:
    share = [notices // processes + (1 if i < notices % processes else 0) for i in range(processes)]
    starts = [sum(share[:i]) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.starmap(render, [(10_000_000 + 10 * i, 2) for i in range(processes)])  # warm every worker
        started = time.perf_counter()
        done = pool.starmap(render, list(zip(starts, share, strict=True)))
        elapsed = time.perf_counter() - started
    count = sum(c for c, _ in done)
    return {"notices": count, "seconds": elapsed, "per_second": count / elapsed, "processes": processes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=400)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    command = "python -m bench.notices " + " ".join(argv if argv is not None else sys.argv[1:])
    state = machine()
    print(f"notice benchmark: {args.notices} single-notice PDFs; {state}", flush=True)
    one = single(args.notices)
    print(f"  1 process   : {one['per_second']:7.1f} PDFs/s ({one['notices']:.0f} in {one['seconds']:.2f} s, "
          f"{one['bytes'] / 1024:.1f} KiB each); {one['per_cpu_second']:.1f} per CPU-second "
          f"({1000 / one['per_cpu_second']:.1f} ms of CPU each)", flush=True)
    many = parallel(args.notices, args.processes)
    print(f"  {args.processes} processes : {many['per_second']:7.1f} PDFs/s ({many['notices']:.0f} in "
          f"{many['seconds']:.2f} s), {many['per_second'] / one['per_second']:.2f} x one process", flush=True)
    ratio, single_ratio = many["per_second"] / CAMPAIGN_TARGET, one["per_second"] / CAMPAIGN_TARGET
    ceiling = one["per_cpu_second"] * args.processes  # if each process had a core to itself
    verdict = (f"all cores: {many['per_second']:.0f} PDFs/s = {ratio:.2f} x the campaign's 300 positions/s "
               f"(one process: {single_ratio:.2f} x); CPU-bound ceiling on {args.processes} idle cores: "
               f"{ceiling:.0f} PDFs/s = {ceiling / CAMPAIGN_TARGET:.2f} x")
    print(verdict)
    if not args.no_docs:
        write_section("notices", f"""## Payment notices (PDF with the pagoPA QR code)

`{command.strip()}` (`make bench-notices`)

Run {now()}, {state}. Single-notice PDFs rendered by `services/pagopa/notice.py` (reportlab + segno),
each with its own notice number and QR code, {one['bytes'] / 1024:.1f} KiB each. One process used
{1000 / one['per_cpu_second']:.1f} ms of CPU per PDF ({one['per_cpu_second']:.0f} per CPU-second: the figure
least disturbed by other load on the machine).

| processes | PDFs | seconds | PDFs/s | ratio to 300/s |
|---|---|---|---|---|
| 1 | {one['notices']:.0f} | {one['seconds']:.2f} | {one['per_second']:.1f} | {single_ratio:.2f} |
| {args.processes} | {many['notices']:.0f} | {many['seconds']:.2f} | {many['per_second']:.1f} | {ratio:.2f} |

No notice target of its own in DESIGN.md: compared with the campaign target (≥ 300 positions/s end to
end with limits off), since each position gets one notice. **{verdict}.**

The QR code is drawn as vector squares on the page (one rectangle per run of dark modules). Before
that it was a PNG that reportlab decoded again: 8.3 KiB and 8.8 ms of CPU per notice, 227 PDFs/s on
both cores at load 1.1 (measured 2026-11-22 03:09 UTC, same command, `--notices 1000`); most of what
is left is segno choosing the QR mask.
""")
    result = {"single": one, "parallel": many, "ratio": ratio}
    print(json.dumps({"single_per_second": round(one["per_second"], 1),
                      "parallel_per_second": round(many["per_second"], 1), "ratio": round(ratio, 3)}))
    return result


if __name__ == "__main__":
    main()
