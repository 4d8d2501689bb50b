"""The `mcpstore` command. Operator commands run the services in-process; client commands call a
registry's HTTP API. Each command family lives in its own module exposing `add_parsers(subparsers)`."""

from __future__ import annotations

import argparse
import sys

from ..audit import context as audit_context
from ..config import ConfigError
from ..resources import version_line
from . import (account_cmds, admin_cmds, audit_cmds, discover_cmds, health_cmds, ledger_cmds, market_cmds,
               package_cmds, policy_cmds, server_cmds, stats_cmds)
from .client import CliError

# The modules that contribute subcommands, imported by name (not discovered by scanning the package, which
# finds nothing inside a PyInstaller binary): each has add_parsers(subparsers) and sets `func` on its parsers.
COMMAND_MODULES = (server_cmds, admin_cmds, account_cmds, package_cmds, discover_cmds, ledger_cmds, market_cmds,
                   stats_cmds, policy_cmds, audit_cmds, health_cmds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcpstore", description="MCP bundle registry appliance and client")
    parser.add_argument("--version", action="version", version=version_line())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
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
