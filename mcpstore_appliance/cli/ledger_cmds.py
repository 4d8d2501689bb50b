"""Ledger commands.

- `mcpstore verify FILE.mcpb [--registry URL] [--key KEY]` (client): is this exact file the one the registry's
  transparency log recorded, in a log that has never rewritten its history?
- `mcpstore ledger verify [--data DIR]` (operator): recompute the whole tree from the stored leaves.
- `mcpstore ledger keys [--data DIR]` (operator): print the verifier keys to give to clients and witnesses.
- `mcpstore ledger set-origin ORIGIN [--yes]` (operator): change the origin fixed in the data folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

from ..ledger import note as notes
from ..ledger.integrity import IntegrityCheck, native_available
from ..ledger.client_check import EXIT_CODES, BundleVerifier, TrustState, VerifyFailure, describe, parse_release
from .client import CliError, Registry, config_dir, read_json_file, write_private_json
from .common import add_settings_flags, settings_from

TRUST_FILE = "ledger-trust.json"


def add_parsers(subparsers) -> None:
    codes = ", ".join(f"{code} {kind.replace('_', ' ')}" for kind, code in EXIT_CODES.items())
    verify = subparsers.add_parser(
        "verify", help="check a bundle against the registry's transparency log",
        description="Check that FILE is recorded in the registry's ledger: signed checkpoint (key pinned on first "
                    "use), inclusion proof, and consistency with the last checkpoint this computer saw. "
                    f"Exit status: 0 verified, 1 could not run, 2 usage, {codes}.")
    verify.add_argument("file", type=Path, metavar="FILE.mcpb")
    verify.add_argument("--registry", help="registry URL (default: the one you logged in to, or $MCPSTORE_REGISTRY)")
    verify.add_argument("--key", help="pin this ledger verifier key (name+id+base64, or a file holding it)")
    verify.add_argument("--package", metavar="NAMESPACE/NAME@VERSION",
                        help="also require that the ledger records this file for that release")
    verify.add_argument("--witness", action="append", default=[], metavar="VKEY",
                        help="require a cosignature from this witness key (repeatable)")
    verify.add_argument("--quorum", type=int, help="how many of the --witness keys must cosign (default: all)")
    verify.set_defaults(func=run_verify)

    ledger = subparsers.add_parser("ledger", help="operator commands for the provenance ledger")
    commands = ledger.add_subparsers(dest="ledger_command", metavar="COMMAND")
    audit = commands.add_parser("verify", help="recompute the whole ledger and check every stored row")
    add_settings_flags(audit)
    audit.add_argument("--workers", type=int, help="processes to use (default: up to 2)")
    audit.add_argument("--skip-index", action="store_true",
                       help="do not check the lookup index (the tree and the checkpoints are always checked)")
    audit.set_defaults(func=run_ledger_verify)
    keys = commands.add_parser("keys", help="print the ledger and witness verifier keys")
    add_settings_flags(keys)
    keys.set_defaults(func=run_ledger_keys)
    origin = commands.add_parser("set-origin", help="change the ledger's origin, the name clients pin with its key")
    add_settings_flags(origin)
    origin.add_argument("origin", help="the new origin, e.g. mcp.example.com/ledger")
    origin.add_argument("--yes", action="store_true", help="change it without asking (the warning is still printed)")
    origin.set_defaults(func=run_set_origin)
    ledger.set_defaults(func=lambda args: ledger.print_help() or 2)


# --- client: mcpstore verify -----------------------------------------------------------------------------


def _file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest(), size


def _key_argument(value: str | None) -> str | None:
    if value and os.path.isfile(value):
        value = Path(value).read_text().strip()
    if value:
        try:
            notes.parse_vkey(value)
        except notes.NoteError as exc:
            raise CliError(f"--key is not a ledger verifier key: {exc}") from None
    return value


def trust_path() -> Path:
    return config_dir() / TRUST_FILE


def run_verify(args: argparse.Namespace) -> int:
    registry = Registry.from_config(args.registry)
    key = _key_argument(args.key)
    if args.package:
        try:
            parse_release(args.package)
        except ValueError as exc:
            raise CliError(f"--package: {exc}") from None
    try:
        witnesses = [notes.parse_vkey(w).vkey() for w in args.witness]
    except notes.NoteError as exc:
        raise CliError(f"--witness is not a witness key: {exc}") from None
    sha256, size = _file_digest(args.file)

    store = read_json_file(trust_path())
    state = TrustState.from_dict(store.get("registries", {}).get(registry.url, {}))

    def fetch(path: str, query: dict | None) -> tuple[int, bytes]:
        status, _, body = registry.request("GET", path, query=query)
        return status, body

    verifier = BundleVerifier(fetch, state, key=key, witnesses=witnesses, quorum=args.quorum)
    try:
        result = verifier.run(sha256, size, release=args.package)
    except VerifyFailure as failure:
        _save_if_trusted(store, registry.url, verifier)
        print(f"verification FAILED ({failure.kind.replace('_', ' ')}): {failure.message}", file=sys.stderr)
        return failure.exit_code
    _save_if_trusted(store, registry.url, verifier)
    for message in result.notes:
        print(message)
    event = result.event
    print(f"verified: {args.file} (sha256 {sha256}) is {describe(event)}, published by {event.get('publisher')} "
          f"at {event.get('time')}")
    print(f"  ledger entry {result.index} is included in {result.checkpoint.origin} checkpoint of size "
          f"{result.checkpoint.size}")
    if result.witnesses:
        print(f"  cosigned by: {', '.join(result.witnesses)}")
    for status in result.status_events:
        print(f"  note: entry {status['index']} records '{status.get('kind')}' at {status.get('time')}"
              + (f": {status['reason']}" if status.get("reason") else ""))
    return 0


def _save_if_trusted(store: dict, url: str, verifier: BundleVerifier) -> None:
    """Keep the pin and newest checkpoint, but only once the served checkpoint has been verified."""
    if not verifier.trusted:
        return
    store.setdefault("registries", {})[url] = verifier.state.to_dict()
    write_private_json(trust_path(), store)


# --- operator: mcpstore ledger verify / keys ----------------------------------------------------------------


def _paths(args: argparse.Namespace) -> dict[str, Path]:
    from ..app import data_paths

    return data_paths(settings_from(args))


def _existing_key(path: Path) -> SigningKey | None:
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(seed) != 32:
        raise CliError(f"{path} does not hold a 32-byte Ed25519 seed")
    return SigningKey(seed)


def run_ledger_verify(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if not paths["db"].exists():
        raise CliError(f"no database at {paths['db']} (is --data right?)")
    key = _existing_key(paths["keys"] / "ledger.key")
    started = time.perf_counter()
    try:
        report = IntegrityCheck(paths["db"], key, workers=args.workers, index=not args.skip_index).run()
    except Exception as exc:  # sqlite3.Error, a missing table: report plainly
        raise CliError(f"cannot audit {paths['db']}: {exc}") from None
    seconds = time.perf_counter() - started
    rate = f", {report.size / seconds:,.0f} entries/s" if seconds > 0 and report.size else ""
    # the C module makes the audit about twice as fast; say when an install lacks it (no compiler or OpenSSL headers)
    rate += "; hashing in C" if native_available() else "; hashing in pure Python (the C module was not built)"
    if key is None:
        print(f"warning: no ledger key at {paths['keys'] / 'ledger.key'}; checkpoint signatures were not checked",
              file=sys.stderr)
    if report.ok:
        latest = "none" if report.latest_checkpoint is None else f"latest size {report.latest_checkpoint}"
        index = "" if args.skip_index else "; lookup index matches"
        print(f"ledger OK: {report.size} entries, every leaf and stored hash recomputed; "
              f"{report.checkpoints} checkpoints ({latest}) signed and consistent{index} ({seconds:.2f} s{rate})")
        return 0
    for problem in report.problems:
        print(problem)
    print(f"ledger verification FAILED: {len(report.problems)} problem(s) in {report.size} entries", file=sys.stderr)
    return 1


def run_ledger_keys(args: argparse.Namespace) -> int:
    from ..ledger.witness import default_witness_name

    settings = settings_from(args)
    paths = _paths(args)
    ledger_key = _existing_key(paths["keys"] / "ledger.key")
    witness_key = _existing_key(paths["keys"] / "witness.key")
    if ledger_key is None:
        raise CliError(f"no ledger key in {paths['keys']}: start the appliance once (`mcpstore serve`)")
    origin = _stored_origin(paths) or settings.ledger_origin
    print(f"ledger  {notes.verifier_for(origin, ledger_key).vkey()}")
    if witness_key is not None:
        name = settings.ledger.witness_name or default_witness_name(origin)
        print(f"witness {notes.verifier_for(name, witness_key, notes.ALG_COSIGNATURE_V1).vkey()}")
    return 0


def _stored_origin(paths: dict[str, Path]) -> str | None:
    from ..config import ConfigError
    from ..ledger.origin import ORIGIN_FILE, stored_origin

    try:
        return stored_origin(paths["keys"] / ORIGIN_FILE)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def run_set_origin(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..ledger.origin import ORIGIN_FILE, check_origin, store_origin

    settings = settings_from(args)
    paths = _paths(args)
    try:
        new = check_origin(args.origin, "the new origin")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    old = _stored_origin(paths)
    key = _existing_key(paths["keys"] / "ledger.key")
    if old is None or key is None:
        raise CliError(f"no ledger in {paths['root']} yet: start the appliance once (`mcpstore serve`), or set "
                       "ledger.origin before the first start")
    if new == old:
        print(f"the ledger origin is already {old}")
        return 0
    print(f"warning: the ledger's checkpoints are signed as {old!r}. Every client that pinned its key\n"
          f"  {notes.verifier_for(old, key).vkey()}\n"
          f"(`mcpstore verify`, tlog clients, witnesses) will reject checkpoints signed as {new!r} and report a\n"
          "different key or a changed log, until it is given the new key. Change it only if you can tell them.",
          file=sys.stderr)
    if not args.yes and not _confirmed(new):
        raise CliError("the ledger origin was not changed")
    store_origin(paths["keys"] / ORIGIN_FILE, new)
    print(f"ledger origin changed from {old} to {new}; restart the appliance to sign with it. The new key to give to "
          f"clients:\n  {notes.verifier_for(new, key).vkey()}")
    if settings.ledger.origin and settings.ledger.origin != new:
        print(f"warning: ledger.origin is set to {settings.ledger.origin!r} in your config or environment: set it "
              f"to {new!r} or remove it, or the appliance will not start", file=sys.stderr)
    return 0


def _confirmed(new: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError("the ledger origin was not changed: there is no terminal to confirm on; add --yes")
    return input(f"Type the new origin ({new}) to change it: ").strip() == new
