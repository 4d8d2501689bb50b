"""Client commands for publishers: publish, yank, unyank, deprecate (over the registry's HTTP API)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

from .client import CliError, Registry, check_json
from .progress import human_bytes

EXIT_QUARANTINED = 3  # the upload was accepted but is not public: CI should notice


def add_parsers(subparsers) -> None:
    publish = subparsers.add_parser(
        "publish", help="upload a .mcpb bundle to a registry",
        description="Upload a bundle. Prints the outcome, its sha256, its ledger index and the scan findings. "
                    f"Exits 0 when published, {EXIT_QUARANTINED} when quarantined (an admin must release it), "
                    "1 when refused.")
    publish.add_argument("file", type=Path, help="the .mcpb file (pack it with `mcpb pack`)")
    publish.add_argument("--pricing", choices=["free", "per_call", "subscription"],
                         help="pricing model (default free for a new package; omit to keep the current pricing)")
    publish.add_argument("--amount", help="exact decimal price, e.g. 0.10 (per_call / subscription)")
    publish.add_argument("--currency", choices=["usd", "eur", "sat"])
    publish.add_argument("--tier", choices=["hobbyist", "pro"],
                         help="hobbyist: hosted by the registry; pro: your own server at --endpoint")
    publish.add_argument("--endpoint", help="https URL of your MCP server (tier pro)")
    publish.add_argument("--org", help="publish into this organization's namespace instead of your own")
    publish.add_argument("--visibility", choices=["public", "org", "private"],
                         help="default: public for your namespace, org for an organization")
    publish.add_argument("--category", help="e.g. developer-tools")
    publish.add_argument("--changelog", help="what changed in this version")
    publish.add_argument("--changelog-file", type=Path, help="read the changelog from a file")
    publish.add_argument("--registry", help="registry URL (default: the one you logged in to)")
    publish.add_argument("--json", action="store_true", help="print the registry's JSON answer")
    publish.set_defaults(func=run_publish)

    for action, needs_reason, text in (
        ("yank", True, "hide a version from 'latest' and update checks (still downloadable by exact version)"),
        ("unyank", False, "undo a yank"),
        ("deprecate", True, "mark a version deprecated, with a reason"),
    ):
        parser = subparsers.add_parser(action, help=text)
        parser.add_argument("name", help="namespace/name, e.g. alice/weather")
        parser.add_argument("version", help="the exact version, e.g. 1.2.0")
        parser.add_argument("--reason", required=needs_reason, help="shown to users and written to the ledger")
        parser.add_argument("--registry")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=run_status, action=action)


def run_publish(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    changelog = args.changelog
    if args.changelog_file:
        if changelog:
            raise CliError("give --changelog or --changelog-file, not both")
        try:
            changelog = args.changelog_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {args.changelog_file}: {exc}") from None
    registry = Registry.from_config(args.registry, need_token=True)
    query = {"namespace": args.org, "pricing": args.pricing, "amount": args.amount, "currency": args.currency,
             "tier": args.tier, "endpoint": args.endpoint, "visibility": args.visibility,
             "category": args.category, "changelog": changelog}
    size = path.stat().st_size
    with open(path, "rb") as fh:
        status, _, data = registry.request(
            "POST", "/api/packages", query=query, body=fh, size=size,
            headers={"Content-Type": "application/octet-stream"}, progress_label=f"uploading {path.name}")
    if status == 422:
        _print_rejection(data)
    result = check_json(status, data)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result, registry.url)
    return EXIT_QUARANTINED if result["state"] == "quarantined" else 0


def _print_rejection(data: bytes) -> None:
    try:
        error = json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        return
    details = error.get("details")
    if isinstance(details, list) and details:
        print(f"rejected: {error.get('message', '')}", file=sys.stderr)
        for item in details:
            if isinstance(item, dict):
                where = item.get("path") or "bundle"
                tag = f"[{item['severity']}] {item.get('check_id', '')} " if item.get("severity") else ""
                print(f"  - {tag}{where}: {item.get('message', '')}", file=sys.stderr)
        raise CliError(f"the registry rejected the bundle ({error.get('code', 'rejected')}); nothing was stored")


def print_result(result: dict, registry_url: str) -> None:
    ref = f"{result['namespace']}/{result['name']}@{result['version']}"
    if result["state"] == "published":
        print(f"published {ref} on {registry_url}")
    elif result["state"] == "pending":
        print(f"pending {ref} on {registry_url}: its server is still being checked in the sandbox; it becomes "
              "available, or is quarantined with the finding, when the check ends")
    else:
        print(f"quarantined {ref} on {registry_url}: not public until an administrator releases it")
    print(f"  sha256     {result['digest']}")
    print(f"  size       {human_bytes(result['size'])} ({result['size']} bytes)")
    sig = result["signature"]
    line = sig["status"]
    if sig.get("subject"):
        line += f", subject {sig['subject']}"
    if sig.get("fingerprint"):
        line += f", fingerprint {sig['fingerprint']}"
    print(f"  signature  {line}")
    pricing = result["pricing"]
    price = "free" if pricing["model"] == "free" else \
        f"{pricing['model']} {pricing['amount_display']} {pricing['currency']}"
    print(f"  pricing    {price}, tier {pricing['tier']}, visibility {result['visibility']}")
    ledger = result.get("ledger")
    if ledger:
        size = f" (tree size {ledger['tree_size']})" if ledger.get("tree_size") else ""
        print(f"  ledger     index {ledger['leaf_index']}{size}")
    else:
        print("  ledger     none yet (written when the version is released)")
    findings = result.get("findings") or []
    print(f"  findings   {len(findings) or 'none'}")
    for finding in findings:
        where = finding.get("file") or "bundle"
        print(f"    - [{finding['severity']}] {finding['check_id']} {where}: {finding['message']}")
    for scanner in result.get("scanner_errors") or []:
        print(f"    - scanner {scanner} failed (this alone quarantines the version)")


def split_name(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise CliError(f"NAME must be namespace/name, e.g. alice/weather (got {text!r})")
    return namespace, name


def run_status(args: argparse.Namespace) -> int:
    namespace, name = split_name(args.name)
    registry = Registry.from_config(args.registry, need_token=True)
    path = "/api/packages/{}/{}/versions/{}/{}".format(
        *(quote(part, safe="") for part in (namespace, name, args.version)), args.action)
    answer = registry.json("POST", path, json_body={"reason": args.reason} if args.reason else {})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    ref = f"{namespace}/{name}@{answer['version']}"
    if not answer["changed"]:
        print(f"{ref} was already {'yanked' if answer['yanked'] else 'not yanked'}"
              if args.action != "deprecate" else f"{ref} was already deprecated with that reason")
        return 0
    done = {"yank": "yanked", "unyank": "unyanked", "deprecate": "deprecated"}[args.action]
    ledger = answer.get("ledger") or {}
    where = f" (ledger index {ledger['leaf_index']})" if ledger.get("leaf_index") is not None else ""
    print(f"{done} {ref}{where}")
    if answer.get("is_latest") is False and args.action == "yank":
        print("  it is no longer 'latest'; it stays downloadable by its exact version")
    return 0
