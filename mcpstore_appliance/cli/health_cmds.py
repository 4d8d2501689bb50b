"""`mcpstore health`: ask a running appliance's /readyz, for a container's HEALTHCHECK or a monitoring probe
that has no curl. It reads the same settings as `serve` (config file, MCPSTORE_* environment), so the probe
finds the port that `serve` listens on without being told."""

from __future__ import annotations

import argparse
import http.client
import sys
from urllib.parse import urlsplit

from .common import add_settings_flags, settings_from

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def add_parsers(subparsers) -> None:
    health = subparsers.add_parser("health", help="exit 0 when the appliance answers /readyz with 200")
    add_settings_flags(health)
    health.add_argument("--url", help="base URL (default: this machine, at the port serve uses)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    health.set_defaults(func=run_health)


def readyz_target(args: argparse.Namespace) -> tuple[str, str, int]:
    """(scheme, host, port) to probe: --url, or the address `serve` listens on (a wildcard means loopback)."""
    if args.url:
        parts = urlsplit(args.url)
        scheme = parts.scheme or "http"
        return scheme, parts.hostname or "127.0.0.1", parts.port or (443 if scheme == "https" else 80)
    server = settings_from(args).server
    return "http", WILDCARDS.get(server.host, server.host), server.port


def run_health(args: argparse.Namespace) -> int:
    scheme, host, port = readyz_target(args)
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = kind(host, port, timeout=args.timeout)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        body = response.read(4096).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        print(f"unhealthy: {scheme}://{host}:{port}/readyz: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"{response.status} {body}")
    return 0 if response.status == 200 else 1
