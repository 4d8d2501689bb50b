"""`mcpstore admin mirror …`: the curated mirror (catalog/mirror.py), in-process on the data folder.

    mirror upstream add URL [--key KEY]       pin an upstream's ledger key (without --key: the one it serves now)
    mirror upstream list
    mirror add URL namespace/name@version --org ORG
    mirror check                              list newer upstream versions; they wait as pending
    mirror pending [--status S]
    mirror approve ID | mirror reject ID [--reason TEXT]

Imports and decisions are made in a site administrator's name: `--as USER`, by default the first one."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import DomainError
from .client import CliError
from .common import add_settings_flags, with_services


def add_parsers(admin_commands) -> None:
    mirror = admin_commands.add_parser("mirror", help="the curated mirror: import releases from upstream registries")
    actions = mirror.add_subparsers(dest="mirror_command", metavar="ACTION", required=True)

    upstream = actions.add_parser("upstream", help="upstream registries and their pinned ledger keys")
    upstream_actions = upstream.add_subparsers(dest="upstream_command", metavar="ACTION", required=True)
    add = upstream_actions.add_parser("add", help="add an upstream, pinning its ledger key")
    add.add_argument("url")
    add.add_argument("--key", help="the upstream's ledger key (its operator prints it with `mcpstore ledger keys`);"
                                   " without it the key the upstream serves now is pinned (trust on first use)")
    add.set_defaults(func=upstream_add)
    listing = upstream_actions.add_parser("list", help="list upstreams")
    listing.set_defaults(func=upstream_list)

    release = actions.add_parser("add", help="import one release: verified against the upstream's ledger, then "
                                             "scanned and published here (or quarantined)")
    release.add_argument("url", help="the upstream's URL (added with `mirror upstream add`)")
    release.add_argument("release", help="namespace/name@version at the upstream")
    release.add_argument("--org", required=True, help="the organization here to publish it under")
    release.add_argument("--visibility", choices=["public", "org", "private"],
                         help="of a package new here (default org: the organization's members)")
    release.set_defaults(func=import_release)

    check = actions.add_parser("check", help="list newer upstream versions of mirrored packages as pending")
    check.set_defaults(func=check_updates)
    pending = actions.add_parser("pending", help="list updates waiting for approval")
    pending.add_argument("--status", default="pending", choices=["pending", "approved", "rejected", "all"])
    pending.set_defaults(func=list_pending)
    approve = actions.add_parser("approve", help="import a pending update")
    approve.add_argument("id", type=int)
    approve.set_defaults(func=approve_update)
    reject = actions.add_parser("reject", help="reject a pending update")
    reject.add_argument("id", type=int)
    reject.add_argument("--reason")
    reject.set_defaults(func=reject_update)

    for parser in (add, listing, release, check, pending, approve, reject):
        add_settings_flags(parser)
        parser.add_argument("--as", dest="as_user", metavar="USER",
                            help="the site administrator acting (default: the first one)")


def _run(args: argparse.Namespace, work) -> int:
    try:
        return with_services(args, work)
    except DomainError as exc:
        raise CliError(exc.message, exc.details) from None


async def _admin(services, username: str | None):
    if username:
        user = await services.accounts.find_user(username)
    else:
        user_id = await services.db.fetch_value("SELECT id FROM users WHERE is_admin = 1 ORDER BY id LIMIT 1")
        if user_id is None:
            raise CliError("there is no site administrator: create one with `mcpstore admin create-user --admin`")
        return await services.accounts.principal_for_user(user_id)
    principal = await services.accounts.principal_for_user(user.id)
    if not principal.is_admin:
        raise CliError(f"{username} is not a site administrator")
    return principal


def _print(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def upstream_add(args: argparse.Namespace) -> int:
    async def work(services):
        answer = await services.mirror.add_upstream(await _admin(services, args.as_user), args.url, args.key)
        how = "given" if answer["pinned"] == "given" else "served now (trust on first use: compare it with the " \
                                                          "key the upstream's operator gives you)"
        state = "added" if answer["created"] else "already added"
        print(f"{answer['url']} {state}; pinned ledger key {answer['ledger_key']} ({how})", file=sys.stderr)
        return 0

    return _run(args, work)


def upstream_list(args: argparse.Namespace) -> int:
    async def work(services):
        for upstream in await services.mirror.upstreams():
            print(f"{upstream['url']}\t{upstream['ledger_key']}\t{upstream['pinned']}")
        return 0

    return _run(args, work)


def import_release(args: argparse.Namespace) -> int:
    """Exit 0 published, 3 quarantined (as `mcpstore publish`)."""
    async def work(services):
        answer = await services.mirror.import_release(await _admin(services, args.as_user), args.url, args.release,
                                                      args.org, visibility=args.visibility)
        _print(answer)
        source = answer["mirrored_from"]
        verb = "imported" if answer["created"] else "was imported before as"
        print(f"{args.release} {verb} {answer['namespace']}/{answer['name']}@{answer['version']} "
              f"({answer['state']}; upstream ledger entry {source['leaf_index']} of {source['tree_size']})",
              file=sys.stderr)
        return 3 if answer["state"] == "quarantined" else 0

    return _run(args, work)


def check_updates(args: argparse.Namespace) -> int:
    """Exit 1 when an upstream could not be checked."""
    async def work(services):
        result = await services.mirror.check()
        for update in result["found"]:
            print(f"{update['id']}\t{update['package']}@{update['version']}\tfrom {update['upstream_release']}")
        for error in result["errors"]:
            print(f"could not check {error['package']} at {error['upstream']}: {error['message']}", file=sys.stderr)
        waiting = len(await services.mirror.pending())
        print(f"{len(result['found'])} new, {waiting} waiting for approval (mcpstore admin mirror approve ID)",
              file=sys.stderr)
        return 1 if result["errors"] else 0

    return _run(args, work)


def list_pending(args: argparse.Namespace) -> int:
    async def work(services):
        for update in await services.mirror.pending(None if args.status == "all" else args.status):
            print(f"{update['id']}\t{update['package']}@{update['version']}\t{update['status']}\t"
                  f"{update['upstream_release']}")
        return 0

    return _run(args, work)


def approve_update(args: argparse.Namespace) -> int:
    async def work(services):
        answer = await services.mirror.approve(await _admin(services, args.as_user), args.id)
        _print(answer)
        return 3 if answer["state"] == "quarantined" else 0

    return _run(args, work)


def reject_update(args: argparse.Namespace) -> int:
    async def work(services):
        answer = await services.mirror.reject(await _admin(services, args.as_user), args.id, args.reason)
        print(f"rejected {answer['package']}@{answer['version']}", file=sys.stderr)
        return 0

    return _run(args, work)
