"""Operator commands for the audit log (in-process, on the data folder):

- `mcpstore audit verify`: re-check every chain, seal, pruning anchor and the ledger's audit-seal leaves; names the
  first row changed, removed or cut off in each chain. Exit 0 when all is well, 1 otherwise.
- `mcpstore audit seal`: seal the chains with new events now (a serving appliance does it every interval).
- `mcpstore audit prune [--days N]`: drop events older than the retention period behind a signed anchor.
- `mcpstore audit export --format jsonl|cef|syslog [--org SLUG]`: print the events; the export is audited.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from ..audit import SYSTEM, context
from ..audit.export import FORMATS, render
from ..audit.service import Filters, event_view, open_audit_log
from ..errors import DomainError
from .client import CliError
from .common import add_settings_flags, with_services


def add_parsers(subparsers) -> None:
    audit = subparsers.add_parser("audit", help="operator commands for the audit log")
    commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = commands.add_parser("verify", help="re-check the audit log's hash chains, seals and anchors")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=run_verify)
    seal = commands.add_parser("seal", help="seal the chains with new events now")
    seal.set_defaults(func=run_seal)
    prune = commands.add_parser("prune", help="drop events older than the retention period (verify still passes)")
    prune.add_argument("--days", type=int, help="keep this many days (default: [audit] retention_days)")
    prune.set_defaults(func=run_prune)
    export = commands.add_parser("export", help="print audit events as JSON Lines, CEF or RFC 5424 syslog")
    export.add_argument("--format", choices=FORMATS, default="jsonl")
    export.add_argument("--org", help="one organization's events (default: all)")
    export.set_defaults(func=run_export)
    for parser in (verify, seal, prune, export):
        add_settings_flags(parser)


def _with_log(args: argparse.Namespace, work) -> int:
    context.bind(context.Where(f"cli audit {args.audit_command}", "local"))

    async def run(services):
        log = open_audit_log(services.db, services.ledger, services.settings.data_dir / "keys",
                             services.settings.audit)
        return await work(services, log)

    try:
        return with_services(args, run)
    except DomainError as exc:
        raise CliError(exc.message, exc.details) from None


def run_verify(args: argparse.Namespace) -> int:
    async def work(services, log):
        report = await log.verify()
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        elif report.ok:
            print(f"audit log OK: {report.events} events in {report.chains} chains, {report.seals} seals checked")
        else:
            for problem in report.problems:
                print(problem.message)
            print(f"audit log verification FAILED: {len(report.problems)} chain(s) broken", file=sys.stderr)
        return 0 if report.ok else 1

    return _with_log(args, work)


def run_seal(args: argparse.Namespace) -> int:
    async def work(services, log):
        print(f"{await log.seal_pending()} chain(s) sealed")
        return 0

    return _with_log(args, work)


def run_prune(args: argparse.Namespace) -> int:
    async def work(services, log):
        if args.days is not None:
            if args.days < 1:
                raise CliError("--days must be at least 1")
            log.settings = log.settings.model_copy(update={"retention_days": args.days})
        print(f"{await log.prune(time.time())} event(s) pruned")
        return 0

    return _with_log(args, work)


def run_export(args: argparse.Namespace) -> int:
    async def work(services, log):
        org_id = None
        if args.org:
            org_id = (await services.accounts.get_org(args.org)).id
        await log.record_now(SYSTEM, "audit.export", org_id=org_id, target=args.org or "site",
                             details={"format": args.format})
        events = [event_view(row) async for row in log.all_events(Filters(org_id=org_id))]
        sys.stdout.writelines(render(events, args.format, socket.gethostname()))
        return 0

    return _with_log(args, work)
