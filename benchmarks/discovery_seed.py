"""Bulk seeding for the discovery benchmark: N packages with realistic, varied manifests, several versions each.

Rows go straight into the catalog schema (003_catalog.sql) with one SQLite connection and executemany, then
`latest_version_id` is set with one UPDATE, which fires the search triggers of 005_search.sql exactly as a
publish would. Deterministic for a given seed. About 30-60 s for 100,000 packages on a 2-core machine.

    python benchmarks/discovery_seed.py DATA_DIR --packages 100000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcpstore_appliance.catalog import semver  # noqa: E402  (after the path set-up above)

SERVICES = (
    "github gitlab bitbucket jira linear notion confluence slack discord telegram teams zoom gmail outlook "
    "calendar drive dropbox box onedrive sharepoint figma airtable trello asana monday clickup hubspot "
    "salesforce zendesk intercom freshdesk stripe paypal shopify woocommerce quickbooks xero postgres mysql "
    "sqlite mongodb redis elasticsearch clickhouse bigquery snowflake duckdb supabase firebase s3 gcs azure "
    "aws docker kubernetes terraform ansible jenkins circleci vercel netlify cloudflare sentry datadog grafana "
    "prometheus pagerduty opsgenie twilio sendgrid mailchimp spotify youtube twitch reddit twitter mastodon "
    "bluesky wikipedia arxiv pubmed openalex weather maps geocoding translate ocr pdf excel csv markdown "
    "image audio video browser puppeteer playwright filesystem git shell ssh time calculator news stocks "
    "crypto bitcoin lightning ethereum home assistant obsidian logseq todoist evernote anki zotero"
).split()
SUFFIXES = ["mcp", "server", "tools", "bridge", "connector", "client", "assistant", "helper", "agent", "kit",
            "plus", "pro", "lite", "sync", "search", "explorer", "manager", "gateway", "api", "hub"]
VERBS = ["get", "list", "search", "create", "update", "delete", "fetch", "send", "query", "analyze", "summarize",
         "export", "import", "sync", "watch", "schedule", "convert", "translate", "render", "upload"]
NOUNS = ["issue", "pull_request", "repository", "message", "channel", "file", "folder", "record", "table", "row",
         "event", "invoice", "customer", "order", "ticket", "page", "document", "image", "report", "metric",
         "alert", "deployment", "container", "secret", "user", "comment", "task", "note", "forecast", "price"]
ADJECTIVES = ["fast", "secure", "simple", "powerful", "lightweight", "complete", "unofficial", "official",
              "self-hosted", "open", "minimal", "friendly", "smart", "robust", "typed"]
PURPOSES = ["for your AI assistant", "for Claude Desktop", "over the Model Context Protocol", "for agents",
            "with read-only access", "with fine-grained permissions", "for teams", "for developers"]
CATEGORIES = ["developer-tools", "productivity", "communication", "data", "finance", "devops", "search",
              "media", "knowledge", "security", "commerce", "ai", "education", "health", "utilities"]
LICENSES = ["MIT", "Apache-2.0", "BSD-3-Clause", "GPL-3.0-only", "MPL-2.0", "ISC", None]
PLATFORM_SETS = [[], [], ["darwin", "linux", "win32"], ["darwin", "linux"], ["darwin"], ["linux"], ["win32"],
                 ["darwin", "win32"]]
SERVER_TYPES = [("node", {"node": ">=18"}), ("python", {"python": ">=3.10"}), ("binary", {}),
                ("uv", {"python": ">=3.11"}), ("node", {"node": ">=20"})]
FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar",
         "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara", "zoe"]


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(SERVICES + NOUNS + VERBS) for _ in range(n))


def long_description(rng: random.Random, title: str) -> str:
    features = "\n".join(f"- {rng.choice(VERBS).title()} {rng.choice(NOUNS).replace('_', ' ')}s" for _ in range(4))
    return (f"# {title}\n\n{title} is a {rng.choice(ADJECTIVES)} MCP server. {words(rng, 20)}.\n\n"
            f"## Features\n\n{features}\n\n## Configuration\n\nSet your API key in the settings. "
            f"See the [documentation](https://example.com/docs) for details.\n")


def manifest_for(rng: random.Random, name: str, namespace: str, version: str, service: str) -> tuple[dict, dict]:
    """(manifest, extracted metadata) with the shapes the publish pipeline stores."""
    title = f"{service.title()} {rng.choice(SUFFIXES).title()}"
    tools = []
    for _ in range(rng.randint(1, 12)):
        verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
        tools.append({"name": f"{verb}_{noun}", "description": f"{verb.title()} a {service} {noun.replace('_', ' ')}"})
    prompts = [{"name": f"{rng.choice(VERBS)}_{service}", "description": f"Prompt about {service}",
                "arguments": ["topic"], "text": "Do ${arguments.topic}"} for _ in range(rng.randint(0, 2))]
    server_type, runtimes = rng.choice(SERVER_TYPES)
    platforms = sorted(rng.choice(PLATFORM_SETS))
    keywords = sorted({service, rng.choice(SERVICES), rng.choice(NOUNS), rng.choice(CATEGORIES)})
    author = {"name": f"{rng.choice(FIRST).title()} {namespace.title()}", "email": f"dev@{namespace}.example",
              "url": f"https://{namespace}.example"}
    user_config = [
        {"key": "api_key", "type": "string", "title": "API key", "description": f"Your {service} API key",
         "required": True, "sensitive": True, "multiple": False, "default": None, "min": None, "max": None},
        {"key": "timeout", "type": "number", "title": "Timeout", "description": "Seconds", "required": False,
         "sensitive": False, "multiple": False, "default": 30, "min": 1, "max": 600},
    ][:rng.randint(0, 2)]
    description = (f"{rng.choice(ADJECTIVES).title()} {service} {rng.choice(NOUNS).replace('_', ' ')} tools "
                   f"{rng.choice(PURPOSES)}")
    links = {"homepage": f"https://{namespace}.example/{name}", "documentation": None, "support": None,
             "repository": f"https://github.com/{namespace}/{name}"}
    metadata = {
        "name": name, "version": version, "display_name": title, "description": description,
        "long_description": long_description(rng, title), "author": author, "manifest_version": "0.3",
        "server_type": server_type, "entry_point": "server/index.js", "tools": tools, "tools_generated": False,
        "prompts": prompts, "prompts_generated": False, "keywords": keywords, "license": rng.choice(LICENSES),
        "platforms": platforms, "runtimes": runtimes, "claude_desktop": None, "user_config": user_config,
        "links": links, "privacy_policies": [], "icon": None, "icons": [], "screenshots": [],
    }
    manifest = {"manifest_version": "0.3", "name": name, "version": version, "display_name": title,
                "description": description, "author": author, "keywords": keywords,
                "server": {"type": server_type, "entry_point": "server/index.js",
                           "mcp_config": {"command": "node", "args": ["${__dirname}/server/index.js"]}},
                "tools": tools, "compatibility": {"platforms": platforms}}
    return manifest, metadata


def sort_key(major: int, minor: int, patch: int, pre: str | None) -> str:
    return semver.parse(f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else "")).sort_key()


def version_list(rng: random.Random) -> list[tuple[str, str, bool]]:
    """Several versions in ascending order: (text, sort key, is_prerelease)."""
    major, minor, patch = rng.choice([0, 1, 1, 2, 3]), rng.randint(0, 5), rng.randint(0, 9)
    out = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.random()
        if kind < 0.1:
            major, minor, patch = major + 1, 0, 0
        elif kind < 0.4:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        if rng.random() < 0.1:
            pre = f"beta.{rng.randint(1, 3)}"
            out.append((f"{major}.{minor}.{patch}-{pre}", sort_key(major, minor, patch, pre), True))
            patch += 0  # the release of the same number may follow
        out.append((f"{major}.{minor}.{patch}", sort_key(major, minor, patch, None), False))
    # de-duplicate (a pre-release and its release may coincide in rare rolls)
    seen, unique = set(), []
    for item in out:
        if item[1] not in seen:
            seen.add(item[1])
            unique.append(item)
    return unique


def seed(db_path: Path, packages: int, seed_value: int = 42, namespaces: int | None = None) -> dict[str, int]:
    """Insert `packages` packages (and their namespaces, owners, versions) into an already migrated database."""
    rng = random.Random(seed_value)
    conn = sqlite3.connect(db_path, isolation_level=None)
    # One big transaction with a rollback journal: no WAL means the pages are written once, not twice.
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-200000")
    now = time.time()
    namespaces = namespaces or max(10, packages // 20)
    conn.execute("BEGIN")
    base_user = (conn.execute("SELECT coalesce(max(id), 0) FROM users").fetchone()[0]) + 1
    base_org = (conn.execute("SELECT coalesce(max(id), 0) FROM orgs").fetchone()[0]) + 1
    ns_rows = []  # (name, user_id, org_id)
    users, orgs = [], []
    for i in range(namespaces):
        if i % 3 == 0:
            org_id = base_org + len(orgs)
            slug = f"org{i}-{rng.choice(SERVICES)}"
            orgs.append((org_id, slug, slug.title(), now))
            ns_rows.append((slug, None, org_id))
        else:
            user_id = base_user + len(users)
            username = f"{rng.choice(FIRST)}{i}"
            users.append((user_id, f"{username}@example.com", username, username.title(), None, 0, 0, now))
            ns_rows.append((username, user_id, None))
    conn.executemany("INSERT INTO users (id, email, username, display_name, password_hash, is_admin, is_disabled,"
                     " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", users)
    conn.executemany("INSERT INTO orgs (id, slug, name, created_at) VALUES (?, ?, ?, ?)", orgs)
    conn.executemany("INSERT INTO namespaces (name, user_id, org_id) VALUES (?, ?, ?)", ns_rows)

    base_package = (conn.execute("SELECT coalesce(max(id), 0) FROM packages").fetchone()[0]) + 1
    base_version = (conn.execute("SELECT coalesce(max(id), 0) FROM versions").fetchone()[0]) + 1
    package_rows, version_rows, latest = [], [], []
    version_id = base_version
    used_names: set[tuple[str, str]] = set()
    for i in range(packages):
        namespace, owner_user, org_id = ns_rows[rng.randrange(len(ns_rows))]
        service = rng.choice(SERVICES)
        name = f"{service}-{rng.choice(SUFFIXES)}"
        while (namespace, name) in used_names:
            name = f"{service}-{rng.choice(SUFFIXES)}-{rng.randint(2, 9999)}"
        used_names.add((namespace, name))
        package_id = base_package + i
        roll = rng.random()
        if roll < 0.9:
            visibility = "public"
        elif roll < 0.97:
            visibility = "org" if org_id is not None else "private"
        else:
            visibility = "private"
        pricing = rng.random()
        if pricing < 0.7:
            model, amount, currency = "free", 0, None
        elif pricing < 0.9:
            model, amount, currency = "per_call", rng.choice([1, 2, 5, 10, 25, 50]), "usd"
        else:
            model, amount, currency = "subscription", rng.choice([199, 499, 999, 1999]), rng.choice(["usd", "eur"])
        tier = "pro" if rng.random() < 0.15 else "hobbyist"
        endpoint = f"https://{namespace}.example/mcp/{name}" if tier == "pro" else None
        downloads = int(rng.paretovariate(1.2) * 10)
        rating_count = rng.choice([0, 0, 1, 3, 10, 40])
        rating = round(rng.uniform(2.5, 5.0), 2) if rating_count else None
        created = now - rng.uniform(0, 3 * 365 * 86400)
        package_rows.append((package_id, namespace, name, org_id, owner_user, visibility, rng.choice(CATEGORIES),
                             model, amount, currency, tier, endpoint, int(rng.random() < 0.2), downloads,
                             rng.randint(0, 5000), rating, rating_count, created, created))
        versions = version_list(rng)
        published = created
        best = None
        for text, key, pre in versions:
            published += rng.uniform(3600, 60 * 86400)
            manifest, metadata = manifest_for(rng, name, namespace, text, service)
            digest = hashlib.sha256(f"{namespace}/{name}@{text}".encode()).hexdigest()
            yanked = published if rng.random() < 0.05 else None
            version_rows.append((
                version_id, package_id, text, key, int(pre), "published", yanked, "broken build" if yanked else None,
                digest, rng.randint(20_000, 5_000_000), digest, "0.3",
                json.dumps(manifest, separators=(",", ":")), json.dumps(metadata, separators=(",", ":")),
                json.dumps(metadata["platforms"]), json.dumps(sorted(metadata["runtimes"])),
                rng.choice(["unsigned", "unsigned", "signed", "self-signed"]),
                f"Changes in {text}: {words(rng, 6)}", model, amount, currency, tier, endpoint, None, published,
                published))
            if yanked is None and (best is None or (best[2] and not pre) or (best[2] == pre and key > best[1])):
                best = (version_id, key, pre)
            version_id += 1
        if best is not None:
            latest.append((best[0], package_id))
    conn.executemany(
        "INSERT INTO packages (id, namespace, name, org_id, owner_user_id, visibility, category, pricing_model,"
        " price_amount, currency, tier, endpoint_url, verified, downloads, invocations, rating_avg, rating_count,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", package_rows)
    conn.executemany(
        "INSERT INTO versions (id, package_id, version, semver_key, is_prerelease, state, yanked_at, yank_reason,"
        " sha256, size, unsigned_sha256, manifest_version, manifest_json, metadata_json, platforms, runtimes,"
        " signature_status, changelog, pricing_model, price_amount, currency, tier, endpoint_url,"
        " publisher_user_id, published_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", version_rows)
    # One UPDATE per package, exactly what refresh_latest does: the triggers build the search index.
    conn.executemany("UPDATE packages SET latest_version_id = ? WHERE id = ?", latest)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return {"packages": packages, "versions": len(version_rows), "namespaces": namespaces}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--packages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    from mcpstore_appliance.db import Database

    db_path = args.data_dir / "mcpstore.sqlite3"

    async def migrate() -> None:
        db = await Database(db_path).open()
        await db.close()

    asyncio.run(migrate())
    started = time.perf_counter()
    counts = seed(db_path, args.packages, args.seed)
    print(f"seeded {counts} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
