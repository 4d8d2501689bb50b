"""Client commands for the registry account: login, logout, whoami."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys

from .client import CliError, Registry, credentials_path, read_json_file, save_credentials, write_private_json


def add_parsers(subparsers) -> None:
    login = subparsers.add_parser("login", help="sign in to a registry and store an API token (mode 0600)")
    login.add_argument("--registry", required=True, help="registry URL, e.g. https://mcp.example.com")
    login.add_argument("--login", help="email or username (prompted when omitted)")
    login.add_argument("--password-stdin", action="store_true")
    login.add_argument("--token", help="store this existing API token instead of signing in with a password")
    login.set_defaults(func=run_login)

    logout = subparsers.add_parser("logout", help="forget the stored token of a registry")
    logout.add_argument("--registry")
    logout.set_defaults(func=run_logout)

    whoami = subparsers.add_parser("whoami", help="show who the stored token belongs to")
    whoami.add_argument("--registry")
    whoami.set_defaults(func=run_whoami)


def run_login(args: argparse.Namespace) -> int:
    registry = Registry(args.registry.rstrip("/"))
    if args.token:
        registry.token = args.token
        me = registry.json("GET", "/api/me")
        save_credentials(registry.url, args.token, me["username"])
        print(f"logged in to {registry.url} as {me['username']} (token stored in {credentials_path()})")
        return 0
    login = args.login or input("Email or username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif os.environ.get("MCPSTORE_PASSWORD"):
        password = os.environ["MCPSTORE_PASSWORD"]
    else:
        password = getpass.getpass("Password: ")
    answer = registry.json("POST", "/api/auth/token", json_body={
        "login": login, "password": password, "name": f"cli@{socket.gethostname()}"[:100],
        # `account` too: `mcpstore buy` orders access, which the API keeps to tokens with that scope
        "scopes": ["read", "publish", "invoke", "account"]})
    save_credentials(registry.url, answer["token"], answer["user"]["username"])
    print(f"logged in to {registry.url} as {answer['user']['username']} (token stored in {credentials_path()})")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    path = credentials_path()
    data = read_json_file(path)
    url = (args.registry or data.get("default") or "").rstrip("/")
    if url not in data.get("registries", {}):
        raise CliError(f"not logged in to {url or 'any registry'}")
    del data["registries"][url]
    if data.get("default") == url:
        data["default"] = next(iter(data["registries"]), None)
    write_private_json(path, data)
    print(f"logged out of {url}")
    return 0


def run_whoami(args: argparse.Namespace) -> int:
    registry = Registry.from_config(args.registry, need_token=True)
    me = registry.json("GET", "/api/me")
    orgs = ", ".join(f"{o['slug']} ({o['role']})" for o in me.get("orgs", [])) or "none"
    print(f"{me['username']} <{me['email']}> on {registry.url}")
    print(f"scopes: {' '.join(me['scopes'])}; organizations: {orgs}")
    return 0
