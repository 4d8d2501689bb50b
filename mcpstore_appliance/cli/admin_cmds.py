"""`mcpstore admin …`: operator commands that act on the data folder in-process."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from ..errors import DomainError
from . import mirror_cmds
from .client import CliError
from .common import add_settings_flags, settings_from, with_services


def add_parsers(subparsers) -> None:
    admin = subparsers.add_parser("admin", help="operator commands on the data folder")
    commands = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)

    user = commands.add_parser("create-user", help="create a user (the first one with --admin)")
    user.add_argument("--email", required=True)
    user.add_argument("--username", required=True)
    user.add_argument("--display-name", default="")
    user.add_argument("--admin", action="store_true", help="make the user a site administrator")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(func=create_user)

    org = commands.add_parser("create-org", help="create an organization")
    org.add_argument("--slug", required=True)
    org.add_argument("--name", default="")
    org.add_argument("--owner", help="username of the first owner")
    org.set_defaults(func=create_org)

    member = commands.add_parser("add-member", help="add a user to an organization or change their role")
    member.add_argument("org")
    member.add_argument("username")
    member.add_argument("--role", default="member", choices=["owner", "admin", "publisher", "member", "auditor"])
    member.set_defaults(func=add_member)

    token = commands.add_parser("create-token", help="create an API token for a user (printed once)")
    token.add_argument("username")
    token.add_argument("--name", default="admin-issued")
    token.add_argument("--scopes", default="read,publish", help="comma separated: read, publish, account (tokens, orgs, members), invoke (hosted bundles), admin")
    token.add_argument("--org", help="bind the token to one organization")
    token.add_argument("--days", type=int, help="expiry in days")
    token.set_defaults(func=create_token)

    users = commands.add_parser("list-users", help="list users")
    users.set_defaults(func=list_users)

    reconcile = commands.add_parser("reconcile", help="compare the market's journal with the payment providers: "
                                    "credit missed payments, report credits a provider does not know")
    reconcile.set_defaults(func=reconcile_market)

    rotate = commands.add_parser("rotate-usage-key", help="sign new usage tokens with a new Ed25519 key; the old "
                                 "key stays in the JWKS until the tokens it signed have expired")
    rotate.set_defaults(func=rotate_usage_key)


    payouts = commands.add_parser("payouts", help="creator payouts")
    payout_actions = payouts.add_subparsers(dest="payouts_command", metavar="ACTION", required=True)
    run = payout_actions.add_parser("run", help="pay every creator whose balance reached the minimum, resuming "
                                    "payouts a crash left open; prints the batch report as JSON")
    run.set_defaults(func=run_payouts)

    for parser in (user, org, member, token, users, reconcile, rotate, run):
        add_settings_flags(parser)
    mirror_cmds.add_parsers(commands)  # admin mirror …


def _run(args: argparse.Namespace, work) -> int:
    try:
        return with_services(args, work)
    except DomainError as exc:
        raise CliError(exc.message, exc.details) from None


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("MCPSTORE_ADMIN_PASSWORD"):
        return os.environ["MCPSTORE_ADMIN_PASSWORD"]
    if not sys.stdin.isatty():
        raise CliError("no password: use --password-stdin or MCPSTORE_ADMIN_PASSWORD when not on a terminal")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CliError("the passwords differ")
    return first


def create_user(args: argparse.Namespace) -> int:
    password = _password(args)

    async def work(services):
        user = await services.accounts.create_user(args.email, args.username, password,
                                                   display_name=args.display_name, is_admin=args.admin)
        print(f"created user {user.username} <{user.email}>{' (site administrator)' if user.is_admin else ''}")
        return 0

    return _run(args, work)


def create_org(args: argparse.Namespace) -> int:
    async def work(services):
        owner = await services.accounts.find_user(args.owner) if args.owner else None
        org = await services.accounts.create_org(None, args.slug, args.name, owner=owner)
        print(f"created organization {org.slug}" + (f" owned by {owner.username}" if owner else ""))
        return 0

    return _run(args, work)


def add_member(args: argparse.Namespace) -> int:
    async def work(services):
        member = await services.accounts.set_member(None, args.org, args.username, args.role)
        print(f"{member.username} is now {member.role} of {args.org}")
        return 0

    return _run(args, work)


def create_token(args: argparse.Namespace) -> int:
    async def work(services):
        user = await services.accounts.find_user(args.username)
        principal = await services.accounts.principal_for_user(user.id)
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        secret, info = await services.accounts.create_token(principal, args.name, scopes, org_slug=args.org,
                                                            expires_in_days=args.days)
        print(secret)
        print(f"token {info.prefix}… for {user.username}, scopes {','.join(info.scopes)}; shown only now",
              file=sys.stderr)
        return 0

    return _run(args, work)


def list_users(args: argparse.Namespace) -> int:
    async def work(services):
        after = 0
        while users := await services.accounts.list_users(500, after):
            for user in users:
                print(f"{user.username}\t{user.email}\t{user.display_name}\t{'admin' if user.is_admin else ''}")
            after = users[-1].id
        return 0

    return _run(args, work)


def reconcile_market(args: argparse.Namespace) -> int:
    """Prints the report as JSON; exit 1 when something needs the operator (unknown credits, a broken journal,
    a provider that failed)."""

    async def work(services):
        from ..market.reconcile import reconcile

        report = await reconcile(services.market)
        print(json.dumps(report, indent=2))
        return 1 if report["unknown_to_provider"] or report["journal"] or report["failed"] else 0

    return _run(args, work)


def rotate_usage_key(args: argparse.Namespace) -> int:
    """Works on the key files alone; a running appliance picks the new key up within a second."""
    from ..tokens import KeyRing, usage_keys_dir

    ring = KeyRing(usage_keys_dir(settings_from(args)))
    kid = ring.rotate()
    print(f"usage tokens are now signed with key {kid}; published keys: "
          f"{', '.join(k['kid'] for k in ring.state().jwks['keys'])}")
    return 0


def run_payouts(args: argparse.Namespace) -> int:
    """One payout batch, with a line per payout as it goes; exit 1 when a payout failed or stayed open."""

    async def work(services):
        payouts = services.market.payouts
        if not payouts.payers:
            print("no payout method is configured (market.lnbits.admin_key for Lightning, market.stripe for "
                  "Stripe Connect): nothing to pay", file=sys.stderr)
            return 0
        print("paying every creator whose available balance reached the minimum (market.payouts.minimum), "
              "after resuming open payouts", file=sys.stderr)
        report = await payouts.run(progress=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(report.as_json(), indent=2))
        return 1 if report.failed or report.open else 0

    return _run(args, work)
