"""SPID login: SAML Responses validated per second by the ACS's real checks, one process and every core.

    python -m bench.login [--responses 3000] [--processes N] [--no-docs]

Each Response is built and signed (Response and Assertion, RSA-SHA256) by the SPID twin IdP's own
code (`sandbox.spid_idp.idp.response`) for its own pending AuthnRequest, before the clock starts.
The clock measures only `services.spid.domain.response.ResponseValidator.validate`, what the ACS
runs on every login: XML parsing with the signature-wrapping checks, both XML signatures verified
against the IdP's metadata certificate, InResponseTo (single use), Destination, issuers, times,
audience, SPID level and attributes. Not measured: the ACS's database write (replay record) and
the gateway token it signs. DESIGN.md sets no login target; the reference printed is a whole city
logging in within one hour (Cremona, 72,179 residents: about 20 logins/s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import sys
import time
from typing import Any

from bench.results import machine, now, write_section
from sandbox.spid_idp import idp as twin
from services.spid.domain import saml
from services.spid.domain.authn import PendingLogin
from services.spid.domain.metadata import IdpRegistry, parse_idp_metadata
from services.spid.domain.response import ResponseValidator
from tests.support.spid import IDP_ENTITY, service_provider, twin_idp

CITY_HOUR = 72_179 / 3600  # every resident of Cremona logging in within one hour
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
CITIZENS = list(twin.CITIZENS)


def prepared(count: int, seed: int) -> list[tuple[str, PendingLogin]]:
    """`count` signed Responses, each for its own pending login."""
    sp, idp = service_provider(), twin_idp()
    out = []
    for n in range(count):
        request_id = f"_bench{seed}x{n}{saml.new_id()[1:12]}"
        read = twin.ReadRequest(request_id=request_id, issuer=sp.entity_id, issue_instant=saml.instant(NOW),
                                level=2, acs_index="0", acs_url=sp.acs_url, relay_state="rs")
        response = twin.response(idp, read, acs_url=sp.acs_url, fiscal_code=CITIZENS[n % len(CITIZENS)],
                                 now=NOW + dt.timedelta(seconds=1))
        pending = PendingLogin(request_id=request_id, tenant=sp.tenant, idp_entity_id=IDP_ENTITY, level=2,
                               issued_at=NOW, acs_url=sp.acs_url, relay_state="rs", return_url=None)
        out.append((response, pending))
    return out


def ready(count: int, seed: int) -> tuple[ResponseValidator, list[tuple[str, PendingLogin]], dict[str, PendingLogin]]:
    """The ACS's validator for the twin IdP, `count` prepared Responses and their pending logins."""
    sp, idp = service_provider(), twin_idp()
    validator = ResponseValidator(sp, IdpRegistry(parse_idp_metadata(twin.idp_metadata(idp))))
    work = prepared(count, seed)
    return validator, work, {p.request_id: p for _, p in work}


def validate(validator: ResponseValidator, work: list[tuple[str, PendingLogin]],
             pending: dict[str, PendingLogin]) -> None:
    for response, _ in work:
        login = validator.validate(response, take_pending=lambda rid: pending.pop(rid, None),
                                   now=NOW + dt.timedelta(seconds=2))
        if not login.citizen.fiscal_code:
            raise RuntimeError("validated a login without a fiscal code")
    if pending:
        raise RuntimeError(f"{len(pending)} responses were not validated")


def validate_all(count: int, seed: int) -> tuple[int, float, float]:
    """Prepare `count` Responses, then validate each; returns (validated, seconds, CPU seconds validating)."""
    validator, work, pending = ready(count, seed)
    started, cpu = time.perf_counter(), time.process_time()
    validate(validator, work, pending)
    return count, time.perf_counter() - started, time.process_time() - cpu


def _in_pool(args: tuple[int, int, Any]) -> tuple[int, float, float]:
    """One worker: prepare, wait for the others, validate; returns (count, start, finish) wall times."""
    count, seed, barrier = args
    validate_all(2, seed + 1_000_000)  # warm: imports, keys
    validator, work, pending = ready(count, seed)
    barrier.wait()
    started = time.time()
    validate(validator, work, pending)
    return count, started, time.time()


def parallel(responses: int, processes: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    share = [responses // processes + (1 if i < responses % processes else 0) for i in range(processes)]
    with context.Manager() as manager:
        barrier = manager.Barrier(processes)
        with context.Pool(processes) as pool:
            done = pool.map(_in_pool, [(share[i], i, barrier) for i in range(processes)])
    count = sum(d[0] for d in done)
    elapsed = max(d[2] for d in done) - min(d[1] for d in done)  # first start to last finish
    return {"responses": count, "seconds": elapsed, "per_second": count / elapsed, "processes": processes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    command = "python -m bench.login " + " ".join(argv if argv is not None else sys.argv[1:])
    state = machine()
    print(f"login benchmark: {args.responses} signed SAML Responses; {state}", flush=True)
    validate_all(2, 999)  # warm
    count, elapsed, cpu = validate_all(args.responses, 0)
    one = {"responses": count, "seconds": elapsed, "per_second": count / elapsed, "per_cpu_second": count / cpu}
    print(f"  1 process   : {one['per_second']:7.1f} Responses/s ({count} in {elapsed:.2f} s, "
          f"{1000 * elapsed / count:.2f} ms each); {one['per_cpu_second']:.1f} per CPU-second "
          f"({1000 * cpu / count:.2f} ms of CPU each)", flush=True)
    many = parallel(args.responses, args.processes)
    print(f"  {args.processes} processes : {many['per_second']:7.1f} Responses/s ({many['responses']:.0f} in "
          f"{many['seconds']:.2f} s), {many['per_second'] / one['per_second']:.2f} x one process", flush=True)
    ratio, single_ratio = many["per_second"] / CITY_HOUR, one["per_second"] / CITY_HOUR
    ceiling = one["per_cpu_second"] * args.processes  # if each process had a core to itself
    verdict = (f"all cores: {many['per_second']:.0f} Responses/s = {ratio:.1f} x a whole city logging in within one "
               f"hour (20/s); one process: {single_ratio:.1f} x; CPU-bound ceiling on {args.processes} idle cores: "
               f"{ceiling:.0f} Responses/s = {ceiling / CITY_HOUR:.0f} x")
    print(verdict)
    if not args.no_docs:
        write_section("login", f"""## SPID login: SAML Responses validated

`{command.strip()}` (`make bench-login`)

Run {now()}, {state}. Responses signed by the SPID twin IdP's code (Response and Assertion, RSA-SHA256,
2048-bit key), prepared before the clock starts; measured: `ResponseValidator.validate` (the ACS checks,
both signatures verified with the xmlsec library). Not measured: the replay record in PostgreSQL and the
signed token. One process used {1000 / one['per_cpu_second']:.2f} ms of CPU per Response
({one['per_cpu_second']:.0f} per CPU-second: the figure least disturbed by other load on the machine).

| processes | Responses | seconds | Responses/s | ms each (per process) | ratio to 20/s |
|---|---|---|---|---|---|
| 1 | {one['responses']:.0f} | {one['seconds']:.2f} | {one['per_second']:.1f} | {1000 / one['per_second']:.2f} \
| {single_ratio:.1f} |
| {args.processes} | {many['responses']:.0f} | {many['seconds']:.2f} | {many['per_second']:.1f} \
| {1000 * args.processes / many['per_second']:.2f} | {ratio:.1f} |

No login target in DESIGN.md; the reference is every resident of Cremona (72,179) logging in within one
hour, about 20 logins/s. **{verdict}.**
""")
    print(json.dumps({"single_per_second": round(one["per_second"], 1),
                      "parallel_per_second": round(many["per_second"], 1), "ratio": round(ratio, 2)}))
    return {"single": one, "parallel": many, "ratio": ratio}


if __name__ == "__main__":
    main()
