"""Client commands for consumers: search, info, download (over the registry's HTTP API).

    mcpstore search weather --platform darwin --pricing free --sort downloads
    mcpstore info alice/weather
    mcpstore download alice/weather@1.2.0 -o weather.mcpb

A download is written to a temporary file beside the target, its sha256 checked against the registry's
answer, and only then renamed into place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

from .client import CliError, Registry
from .progress import human_bytes

SORTS = ["relevance", "downloads", "rating", "newest", "name"]
_REFERENCE = re.compile(r"^([a-z0-9][a-z0-9-]*)/([a-z0-9][a-z0-9._-]*)(?:@(.+))?$")


def add_parsers(subparsers) -> None:
    search = subparsers.add_parser("search", help="search a registry's catalog")
    search.add_argument("query", nargs="*", help="words to look for (omit to list the catalog)")
    search.add_argument("--category")
    search.add_argument("--platform", choices=["darwin", "linux", "win32"])
    search.add_argument("--runtime", help="e.g. node, python")
    search.add_argument("--pricing", choices=["free", "paid", "per_call", "subscription"])
    search.add_argument("--max-price", type=int, help="in minor units (cents, satoshis)")
    search.add_argument("--min-rating", type=float)
    search.add_argument("--verified", action="store_true", help="only verified publishers")
    search.add_argument("--tier", choices=["hobbyist", "pro"])
    search.add_argument("--org", help="only this namespace (organization or user)")
    search.add_argument("--sort", choices=SORTS)
    search.add_argument("--limit", type=int, default=20, help="results per page (1-100, default 20)")
    search.add_argument("--cursor", help="continue after a previous page (printed at its end)")
    search.add_argument("--registry")
    search.add_argument("--json", action="store_true", help="print the registry's JSON answer")
    search.set_defaults(func=run_search)

    info = subparsers.add_parser("info", help="show a package: versions, tools, price, signature, ledger index")
    info.add_argument("name", help="namespace/name, e.g. alice/weather")
    info.add_argument("--registry")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)

    download = subparsers.add_parser("download", help="download a bundle (checks its sha256)")
    download.add_argument("name", help="namespace/name[@version]; without a version, the latest")
    download.add_argument("-o", "--output", type=Path, help="file to write (default: <name>-<version>.mcpb)")
    download.add_argument("--registry")
    download.set_defaults(func=run_download)


def parse_reference(text: str) -> tuple[str, str, str | None]:
    match = _REFERENCE.match(text)
    if not match:
        raise CliError(f"{text!r} is not a package name: use namespace/name or namespace/name@version")
    return match.group(1), match.group(2), match.group(3)


def run_search(args: argparse.Namespace) -> int:
    registry = Registry.from_config(args.registry)
    query = {"q": " ".join(args.query) or None, "category": args.category, "platform": args.platform,
             "runtime": args.runtime, "pricing": args.pricing, "max_price": args.max_price,
             "min_rating": args.min_rating, "verified": "true" if args.verified else None, "tier": args.tier,
             "org": args.org, "sort": args.sort, "limit": args.limit, "cursor": args.cursor}
    page = registry.json("GET", "/api/packages", query=query)
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return 0
    corrected = page["query"].get("corrected_query")
    if corrected:
        print(f"no exact match; showing results for: {corrected}")
    if not page["packages"]:
        print("no packages found")
        return 0
    for item in page["packages"]:
        print(_line(item))
    shown = len(page["packages"])
    print(f"\n{shown} of {page['total']} package(s)")
    if page.get("next_cursor"):
        print(f"more: mcpstore search {' '.join(args.query)} --cursor {page['next_cursor']}".replace("  ", " "))
    return 0


def _price(pricing: dict) -> str:
    if pricing["model"] == "free":
        return "free"
    amount, currency = pricing["amount"], (pricing.get("currency") or "").lower()
    text = f"{amount} sat" if currency == "sat" else f"{amount / 100:.2f} {currency.upper()}"
    return f"{text}/{'call' if pricing['model'] == 'per_call' else 'month'}"


def _line(item: dict) -> str:
    rating = f"{item['rating']:.1f}★" if item.get("rating") is not None else "-"
    badges = " ✓" if item.get("verified") else ""
    description = item.get("description") or ""
    if len(description) > 70:
        description = description[:69] + "…"
    return (f"{item['id']}@{item['version']}{badges}  {_price(item['pricing'])}  {rating}  "
            f"{item.get('downloads', 0)} downloads\n    {description}")


def run_info(args: argparse.Namespace) -> int:
    namespace, name, version = parse_reference(args.name)
    if version:
        raise CliError("info takes namespace/name without a version")
    registry = Registry.from_config(args.registry)
    data = registry.json("GET", f"/api/packages/{namespace}/{name}")
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    author = (data.get("author") or {}).get("name") or "unknown"
    print(f"{data['id']}  {data.get('display_name') or name}  by {author}")
    if data.get("description"):
        print(f"  {data['description']}")
    print(f"  latest:     {data.get('latest_version') or 'none installable'}"
          f"{'  (deprecated: ' + data['deprecation_reason'] + ')' if data.get('deprecated') else ''}")
    print(f"  price:      {_price(data['pricing'])}  tier {data['tier']}"
          f"{'  verified publisher' if data.get('verified') else ''}")
    if data.get("sha256"):
        signature = data.get("signature") or {}
        signer = (signature.get("signer") or {}).get("subject")
        print(f"  bundle:     sha256:{data['sha256']} ({human_bytes(data.get('size') or 0)})")
        print(f"  signature:  {signature.get('status')}{' by ' + signer if signer else ''}")
        print(f"  ledger:     leaf {data.get('ledger_index')}")
    compatibility = data.get("compatibility") or {}
    platforms = ", ".join(compatibility.get("platforms") or []) or "any"
    print(f"  platforms:  {platforms}; runtimes: {', '.join(compatibility.get('runtimes') or {}) or 'none'}")
    stats = data.get("stats") or {}
    print(f"  downloads:  {stats.get('downloads', 0)} ({stats.get('downloads_30d', 0)} in 30 days)")
    if data.get("tools"):
        print("  tools:")
        for tool in data["tools"]:
            print(f"    - {tool['name']}: {tool.get('description') or ''}".rstrip(": "))
    secrets = [c["key"] for c in data.get("user_config") or [] if c.get("sensitive")]
    if data.get("user_config"):
        keys = ", ".join(c["key"] for c in data["user_config"])
        print(f"  settings:   {keys}{' (secret: ' + ', '.join(secrets) + ')' if secrets else ''}")
    versions = data.get("versions") or {}
    recent = ", ".join(v["version"] + (" (yanked)" if v.get("yanked") else "") for v in versions.get("recent", []))
    print(f"  versions:   {versions.get('count', 0)}: {recent}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    namespace, name, version = parse_reference(args.name)
    registry = Registry.from_config(args.registry)
    if version is None:
        data = registry.json("GET", f"/api/packages/{namespace}/{name}/latest")
        version = data.get("latest_version")
        if not version:
            raise CliError(f"{namespace}/{name} has no installable version")
        expected = data["sha256"]
    else:
        data = registry.json("GET", f"/api/packages/{namespace}/{name}/versions/{quote(version, safe='')}")
        expected = data["sha256"]
    target = args.output or Path(f"{name}-{version}.mcpb")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        label = f"downloading {name}-{version}.mcpb"
        with os.fdopen(fd, "wb") as fh:
            headers = registry.download(
                f"/api/packages/{namespace}/{name}/versions/{quote(version, safe='')}/download", fh, label)
            if headers.get("location"):
                # The registry redirects to its blob store (a presigned URL that carries its own signature).
                fh.seek(0)
                fh.truncate()
                parts = urlsplit(headers["location"])
                Registry(f"{parts.scheme}://{parts.netloc}").download(
                    parts.path + (f"?{parts.query}" if parts.query else ""), fh, label)
        digest = _sha256(temp)
        if digest != expected:
            raise CliError(f"download corrupted: sha256 {digest} but the registry lists {expected}")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    print(f"saved {target} ({human_bytes(target.stat().st_size)}, sha256:{expected})")
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
