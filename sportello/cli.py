"""`sportello`: the operator's command line.

    sportello tenant add <id> --name ... --into <folder>
                                                start a new Comune's tenant file (validated)
    sportello tenant validate <file>            check a tenant file (and that its secrets exist)
    sportello tenant check <id>                 can this process reach each national platform?
    sportello dead-letters list <service>       dead letters waiting (over RPC)
    sportello dead-letters replay <service> <id>
    sportello campaign run <csv> --tenant <id>  a pagoPA campaign from a CSV, with a progress bar
    sportello probe                             liveness of this container (its /healthz)

Why a CLI and not only the back office: an operator on a pod (`kubectl exec`) or a host must be
able to check a new Comune before restarting anything, and replay what failed, with the same
settings the processes read (`SPORTELLO_*`). Exit codes: 0 fine, 1 a problem found, 2 usage,
78 configuration (as the processes). nameko is imported only by the RPC commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from sportello.errors import ConfigurationError, SportelloError
from sportello.metrics import metrics_address
from sportello.settings import SERVICE_NAMES
from sportello.tenants import SecretSource, Tenant, load_tenants

EX_PROBLEM = 1
EX_CONFIG = 78


def _out(line: str = "") -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(f"sportello: {line}", file=sys.stderr, flush=True)


def _secrets_dir(value: str | None) -> Path | None:
    chosen = value or os.environ.get("SPORTELLO_SECRETS_DIR")
    return Path(chosen) if chosen else None


def _secret_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if set(node) == {"secret"}:
            yield str(node["secret"])
            return
        for value in node.values():
            yield from _secret_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_names(item)


# --- tenant add ----------------------------------------------------------------------------------

def tenant_add(tenant_id: str, name: str, fiscal_code: str, istat_code: str, ipa_code: str, folder: Path) -> int:
    """Write `<folder>/<id>.yaml` with the Comune's identity, validated exactly as at start-up.

    The platform sections (pagopa, appio, spid, pdnd) are added by hand afterwards, each secret as
    `{secret: NAME}` (see docs/runbook.md); `tenant validate` then checks file and secrets together.
    """
    target = folder / f"{tenant_id}.yaml"
    if target.exists():
        _err(f"{target}: already exists; edit it and run `sportello tenant validate {target}`")
        return EX_PROBLEM
    document = {"id": tenant_id, "name": name, "fiscal_code": fiscal_code, "istat_code": istat_code,
                "ipa_code": ipa_code, "operators": {}}
    try:
        Tenant.model_validate(document)
    except ValueError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in getattr(exc, "errors", lambda: [])())
        _err(f"invalid tenant: {problems or type(exc).__name__}")
        return EX_CONFIG
    folder.mkdir(parents=True, exist_ok=True)
    if any(_fiscal_code_of(other) == fiscal_code for other in folder.glob("*.yaml")):
        _err(f"a tenant with fiscal code {fiscal_code} already exists in {folder}")
        return EX_PROBLEM
    header = (f"# {name}: added with `sportello tenant add`. Add the platform sections (pagopa, appio, spid,\n"
              "# pdnd) as in sandbox/tenants/cremona.yaml, secrets as {secret: NAME}; then\n"
              f"# `sportello tenant validate {target}`.\n")
    target.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    _out(f"{target}: written; next: add its platform sections, then `sportello tenant validate {target}`")
    return 0


def _fiscal_code_of(path: Path) -> str | None:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return str(raw.get("fiscal_code")) if isinstance(raw, dict) else None


# --- tenant validate -----------------------------------------------------------------------------

def tenant_validate(path: Path, secrets_dir: Path | None) -> int:
    """The exact validation a process does at start-up, on one file, listing every missing secret."""
    if not path.is_file():
        _err(f"{path}: no such file")
        return EX_CONFIG
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        _err(f"{path.name}: not valid YAML ({type(exc).__name__})")
        return EX_CONFIG
    source = SecretSource(secrets_dir=secrets_dir)
    missing = sorted({name for name in _secret_names(raw) if source.find(name) is None})
    if missing:
        for name in missing:
            _err(f"{path.name}: secret {name} is missing (SPORTELLO_SECRET_{name} or a file {name}"
                 + (f" in {secrets_dir})" if secrets_dir else "; set SPORTELLO_SECRETS_DIR)"))
        return EX_CONFIG
    with tempfile.TemporaryDirectory(prefix="sportello-tenant-") as folder:
        copy = Path(folder) / (path.stem + ".yaml")
        shutil.copyfile(path, copy)
        try:
            registry = load_tenants(Path(folder), source)
        except ConfigurationError as exc:
            _err(exc.detail.replace(copy.name, path.name, 1))
            return EX_CONFIG
    tenant = next(iter(registry))
    sections = [name for name in ("pagopa", "appio", "spid", "pdnd") if getattr(tenant, name) is not None]
    _out(f"{path.name}: tenant {tenant.id!r} ({tenant.name}) is valid; sections: {', '.join(sections) or 'none'}")
    return 0


# --- tenant check ----------------------------------------------------------------------------------

def platform_urls(tenant: Tenant) -> list[tuple[str, str]]:
    """(what, URL) of every national platform endpoint the tenant's services call."""
    urls: list[tuple[str, str]] = []
    if tenant.pagopa:
        urls += [("pagopa GPD", str(tenant.pagopa.gpd_base_url)),
                 ("pagopa Checkout", str(tenant.pagopa.checkout_base_url))]
    if tenant.appio:
        urls.append(("App IO", str(tenant.appio.base_url)))
    if tenant.pdnd:
        urls += [("PDND token", str(tenant.pdnd.token_url)), ("ANPR (PDND e-services)", str(tenant.pdnd.anpr_base_url)),
                 ("ANPR ws 6001", str(tenant.pdnd.anpr_ws6001_url))]
    if tenant.spid:
        urls += [("SPID IdP metadata", source) for source in tenant.spid.idp_metadata
                 if source.startswith(("http://", "https://"))]
        if tenant.spid.cie is not None:
            urls += [("CIE OpenID Provider", str(tenant.spid.cie.provider)),
                     ("CIE trust anchor", str(tenant.spid.cie.trust_anchor))]
    return urls


def reach(url: str, timeout: float) -> tuple[bool, str]:
    """Reachable = DNS, TCP and TLS work and an HTTP answer comes back, whatever its status."""
    try:
        reply = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return False, "timeout"
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    return True, f"HTTP {reply.status_code}"


def tenant_check(tenant_id: str, timeout: float, reach_url: Callable[[str, float], tuple[bool, str]] = reach) -> int:
    folder = os.environ.get("SPORTELLO_TENANTS_DIR")
    if not folder:
        _err("SPORTELLO_TENANTS_DIR is not set")
        return EX_CONFIG
    try:
        tenant = load_tenants(Path(folder), SecretSource(secrets_dir=_secrets_dir(None))).get(tenant_id)
    except SportelloError as exc:
        _err(exc.detail)
        return EX_CONFIG
    urls = platform_urls(tenant)
    if not urls:
        _out(f"tenant {tenant.id!r} calls no national platform")
        return 0
    failures = 0
    width = max(len(what) for what, _ in urls)
    for what, url in urls:
        ok, detail = reach_url(url, timeout)
        failures += not ok
        _out(f"{'ok  ' if ok else 'FAIL'}  {what.ljust(width)}  {url}  ({detail})")
    _out(f"{len(urls) - failures}/{len(urls)} platform endpoints reachable for tenant {tenant.id!r}")
    return EX_PROBLEM if failures else 0


# --- dead letters (RPC) ------------------------------------------------------------------------------

def _rpc(service: str, method: str, *args: Any, timeout: float, **kwargs: Any) -> Any:
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # known; docs/adr/0001
    from nameko.exceptions import RemoteError
    from nameko.standalone.rpc import ClusterRpcProxy

    from sportello.edge.rpc import register_remote_errors

    uri = os.environ.get("SPORTELLO_AMQP_URI")
    if not uri:
        raise ConfigurationError("SPORTELLO_AMQP_URI is not set")
    register_remote_errors()
    try:
        with ClusterRpcProxy({"AMQP_URI": uri, "serializer": "json"}, timeout=timeout) as cluster:
            return getattr(getattr(cluster, service), method)(*args, **kwargs)
    except RemoteError as exc:
        raise SportelloError(f"{service}.{method} failed: {exc.exc_type}") from None


def dead_letters_list(service: str, tenant: str | None, include_replayed: bool, limit: int, as_json: bool,
                      timeout: float) -> int:
    letters = _rpc(service, "list_dead_letters", tenant=tenant, pending_only=not include_replayed, limit=limit,
                   timeout=timeout)
    if as_json:
        _out(json.dumps(letters, indent=2))
        return 0
    if not letters:
        _out(f"{service}: no dead letters" + ("" if include_replayed else " waiting"))
        return 0
    _out(f"{'id':>6}  {'dead-lettered at':<32}  {'tenant':<12}  {'replays':>7}  {'queue':<40}  reason")
    for letter in letters:
        _out(f"{letter['id']:>6}  {letter['dead_lettered_at']:<32}  {letter['tenant'] or '-':<12}  "
             f"{letter['replay_count']:>7}  {letter['queue']:<40}  {letter['reason'][:80]}")
    return 0


def dead_letters_replay(service: str, letter_id: int, tenant: str | None, timeout: float) -> int:
    letter = _rpc(service, "replay_dead_letter", letter_id, tenant=tenant, timeout=timeout)
    _out(f"{service}: dead letter {letter['id']} replayed into {letter['queue']} "
         f"(replays: {letter['replay_count']})")
    return 0


# --- campaign (pagopa over RPC) ---------------------------------------------------------------------------

def _bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def campaign_run(path: Path, tenant: str, name: str | None, wait: bool, poll_seconds: float, timeout: float,
                 max_wait: float) -> int:
    """Upload the CSV (every row validated by pagopa), then follow the positions being made."""
    if not path.is_file():
        _err(f"{path}: no such file")
        return EX_CONFIG
    answer = _rpc("pagopa", "upload_campaign", tenant, name or path.stem, path.read_text(encoding="utf-8-sig"),
                  timeout=timeout)
    campaign_id = answer["campaign_id"]
    _out(f"campaign {campaign_id} ({answer['name']}): {answer['total_rows']} rows, {answer['valid_rows']} valid")
    for error in answer.get("errors", []):
        _out(f"  row {error['row']}: {error['error']}")
    if not wait:
        return 0 if answer["valid_rows"] == answer["total_rows"] else EX_PROBLEM
    deadline = time.monotonic() + max_wait
    progress = answer
    tty = sys.stderr.isatty()
    while True:
        counts = progress["counts"]
        done = counts.get("created", 0) + counts.get("failed", 0)
        line = (f"{_bar(done, progress['valid_rows'])}  created {counts.get('created', 0)}, "
                f"failed {counts.get('failed', 0)}")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        if progress["status"] != "running":
            break
        if time.monotonic() > deadline:
            _err(f"\nstill running after {max_wait:.0f} s: follow it with the campaign id")
            return EX_PROBLEM
        time.sleep(poll_seconds)
        progress = _rpc("pagopa", "campaign_progress", tenant, campaign_id, timeout=timeout)
    if tty:
        print(file=sys.stderr)
    counts = progress["counts"]
    _out(f"campaign {campaign_id} {progress['status']}: {counts.get('created', 0)} created, "
         f"{counts.get('failed', 0)} failed, {counts.get('invalid', 0)} invalid")
    return 0 if counts.get("failed", 0) == 0 and counts.get("invalid", 0) == 0 else EX_PROBLEM


# --- probe ---------------------------------------------------------------------------------------------

def probe(url: str | None, timeout: float) -> int:
    """The container's HEALTHCHECK: its own /healthz on the metrics port."""
    if url is None:
        address = metrics_address()
        if address is None:
            _err("SPORTELLO_METRICS_ADDRESS is not set: nothing to probe")
            return EX_CONFIG
        host, port = address
        host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - a wildcard is not a peer
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - our own http URL
            return 0 if reply.status == 200 else EX_PROBLEM
    except (urllib.error.URLError, OSError) as exc:
        _err(f"{url}: {type(exc).__name__}")
        return EX_PROBLEM


# --- arguments -----------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sportello", description="Operate a Sportello installation.")
    commands = top.add_subparsers(dest="command", required=True)

    tenant = commands.add_parser("tenant", help="tenant (Comune) configuration").add_subparsers(
        dest="action", required=True)
    add = tenant.add_parser("add", help="write a new Comune's tenant file (identity, validated)")
    add.add_argument("id", help="tenant id: lower-case letters, digits and dashes (e.g. lodi)")
    add.add_argument("--name", required=True, help='e.g. "Comune di Lodi"')
    add.add_argument("--fiscal-code", required=True, help="the Comune's 11-digit fiscal code")
    add.add_argument("--istat-code", required=True, help="6-digit ISTAT code")
    add.add_argument("--ipa-code", required=True, help="IPA code, e.g. c_e648")
    add.add_argument("--into", type=Path, help="tenants folder (default: SPORTELLO_TENANTS_DIR)")
    validate = tenant.add_parser("validate", help="validate a tenant file and its secrets")
    validate.add_argument("file", type=Path)
    validate.add_argument("--secrets-dir", help="default: SPORTELLO_SECRETS_DIR")
    check = tenant.add_parser("check", help="check connectivity to each national platform of a tenant")
    check.add_argument("tenant")
    check.add_argument("--timeout", type=float, default=10.0)

    letters = commands.add_parser("dead-letters", help="stored dead letters of a service").add_subparsers(
        dest="action", required=True)
    listing = letters.add_parser("list", help="list dead letters")
    listing.add_argument("service", choices=SERVICE_NAMES)
    listing.add_argument("--tenant")
    listing.add_argument("--all", action="store_true", help="include those already replayed")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--timeout", type=float, default=15.0)
    replay = letters.add_parser("replay", help="put a dead letter back into its queue")
    replay.add_argument("service", choices=SERVICE_NAMES)
    replay.add_argument("id", type=int)
    replay.add_argument("--tenant")
    replay.add_argument("--timeout", type=float, default=15.0)

    campaign = commands.add_parser("campaign", help="pagoPA payment campaigns").add_subparsers(
        dest="action", required=True)
    run = campaign.add_parser("run", help="upload a CSV campaign and follow it to the end")
    run.add_argument("csv", type=Path)
    run.add_argument("--tenant", required=True)
    run.add_argument("--name", help="default: the file name")
    run.add_argument("--no-wait", action="store_true", help="upload only")
    run.add_argument("--poll", type=float, default=1.0, help="seconds between progress reads")
    run.add_argument("--max-wait", type=float, default=3600.0)
    run.add_argument("--timeout", type=float, default=60.0)

    health = commands.add_parser("probe", help="exit 0 when this container's process answers /healthz")
    health.add_argument("--url", help="default: /healthz at SPORTELLO_METRICS_ADDRESS")
    health.add_argument("--timeout", type=float, default=3.0)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "tenant" and args.action == "add":
            folder = args.into or (Path(os.environ["SPORTELLO_TENANTS_DIR"])
                                   if os.environ.get("SPORTELLO_TENANTS_DIR") else None)
            if folder is None:
                _err("say where: --into <folder> or SPORTELLO_TENANTS_DIR")
                return EX_CONFIG
            return tenant_add(args.id, args.name, args.fiscal_code, args.istat_code, args.ipa_code, folder)
        if args.command == "tenant" and args.action == "validate":
            return tenant_validate(args.file, _secrets_dir(args.secrets_dir))
        if args.command == "tenant":
            return tenant_check(args.tenant, args.timeout)
        if args.command == "dead-letters" and args.action == "list":
            return dead_letters_list(args.service, args.tenant, args.all, args.limit, args.json, args.timeout)
        if args.command == "dead-letters":
            return dead_letters_replay(args.service, args.id, args.tenant, args.timeout)
        if args.command == "campaign":
            return campaign_run(args.csv, args.tenant, args.name, not args.no_wait, args.poll, args.timeout,
                                args.max_wait)
        return probe(args.url, args.timeout)
    except ConfigurationError as exc:
        _err(exc.detail)
        return EX_CONFIG
    except SportelloError as exc:
        _err(f"{exc.code}: {exc.detail}")
        return EX_PROBLEM
    except Exception as exc:  # noqa: BLE001 - e.g. the broker is down: say so, no traceback
        _err(f"{type(exc).__name__}: {exc}")
        return EX_PROBLEM


if __name__ == "__main__":
    raise SystemExit(main())
