"""The `mcpstore` command. Operator commands run the services in-process; client commands call a
registry's HTTP API. Each command family lives in its own module exposing `add_parsers(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..audit import context as audit_context
from ..config import ConfigError
from .client import CliError

# Modules that contribute subcommands; each has add_parsers(subparsers) and sets `func` on its parsers.
COMMAND_MODULES = (
    "mcpstore_appliance.cli.server_cmds",
    "mcpstore_appliance.cli.admin_cmds",
    "mcpstore_appliance.cli.account_cmds",
    "mcpstore_appliance.cli.package_cmds",
    "mcpstore_appliance.cli.discover_cmds",
    "mcpstore_appliance.cli.ledger_cmds",
    "mcpstore_appliance.cli.market_cmds",
    "mcpstore_appliance.cli.stats_cmds",
    "mcpstore_appliance.cli.policy_cmds",
    "mcpstore_appliance.cli.audit_cmds",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcpstore", description="MCP bundle registry appliance and client")
    parser.add_argument("--version", action="version", version=f"mcpstore {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module must not be hidden
                raise
            continue
        module.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # operator commands' audit events say where they came from (audit/context.py)
    audit_context.bind(audit_context.Where(f"cli {args.command}", "local"))
    try:
        return int(args.func(args) or 0)
    except (CliError, ConfigError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        details = exc.args[1] if len(exc.args) > 1 else None
        for item in details if isinstance(details, list) else []:
            print(f"  - {item.get('path', '')}: {item.get('message', item)}" if isinstance(item, dict)
                  else f"  - {item}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
