"""`mcpstore policy check FILE.mcpb --org ORG`: whether an organization's group policy allows a bundle, and why
(over the registry's HTTP API, with the user's token). The bundle is named by its sha256, so what is checked
is exactly this file as the registry published it."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

from .client import CliError, Registry

EXIT_REFUSED = 4  # the command worked; the policy says no


def add_parsers(subparsers) -> None:
    policy = subparsers.add_parser("policy", help="an organization's group policy")
    commands = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check", help="whether the org's policy allows a bundle, and why",
        description=f"Exits 0 when the bundle is allowed, {EXIT_REFUSED} when the policy refuses it (the reason is "
                    "printed), 1 on errors.")
    check.add_argument("file", type=Path, help="the .mcpb file")
    check.add_argument("--org", required=True, help="the organization whose policy applies")
    check.add_argument("--registry", help="registry URL (default: the one you logged in to)")
    check.add_argument("--json", action="store_true", help="print the registry's JSON answer")
    check.set_defaults(func=run_check)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def run_check(args: argparse.Namespace) -> int:
    sha256 = file_sha256(args.file)
    registry = Registry.from_config(args.registry, need_token=True)
    answer = registry.json("GET", f"/api/orgs/{quote(args.org, safe='')}/policy/check", query={"sha256": sha256})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0 if answer["allowed"] else EXIT_REFUSED
    release = answer.get("release")
    name = f"{release['package']} {release['version']}" if release else f"{args.file.name} (sha256 {sha256[:16]}…)"
    if answer["allowed"]:
        extra = " (installed automatically on managed devices)" if answer.get("auto_install") else ""
        print(f"allowed: {name} by the policy of {args.org}{extra}")
        return 0
    print(f"refused: {name} by the policy of {args.org}: {answer['reason']} [{answer['rule']}]")
    return EXIT_REFUSED
