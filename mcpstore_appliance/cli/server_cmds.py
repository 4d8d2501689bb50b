"""Operator commands that run the appliance: serve, backup, restore."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from ..private_files import PRIVATE_FILE_MODE, close_to_others, private_dir, private_file, write_private_text
from .client import CliError
from .common import add_settings_flags, settings_from
from ..web.keys import SERVICES


def add_parsers(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the appliance (creates the data folder on first start)")
    add_settings_flags(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks a free port)")
    serve.add_argument("--workers", metavar="N", help="processes serving the port from one data folder: a number or"
                       " 'auto' for one per core (default 1, or server.workers in config)")
    serve.add_argument("--log-level", default=os.environ.get("MCPSTORE_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=run_serve)

    backup = subparsers.add_parser("backup", help="consistent copy of database, keys and blobs, safe while serving")
    add_settings_flags(backup)
    backup.add_argument("dest", type=Path, help="backup folder (created; must be empty or absent)")
    backup.set_defaults(func=run_backup)

    restore = subparsers.add_parser("restore", help="restore a backup into an empty data folder")
    add_settings_flags(restore)
    restore.add_argument("src", type=Path, help="a folder written by `mcpstore backup`")
    restore.set_defaults(func=run_restore)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def run_serve(args: argparse.Namespace) -> int:
    server = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    settings = settings_from(args, **({"server": server} if server else {}))
    configure_logging(args.log_level)
    from ..eventloop import EventLoopUnavailable, run
    from ..memory import keep_freed_memory
    from ..worker_role import WorkerRole
    from .supervisor import run_workers, worker_count

    role = WorkerRole.from_environment()
    count = worker_count(args.workers or settings.server.workers)
    if count > 1 and role.count == 1:
        return run_workers(settings, count, args.log_level, args.config)
    keep_freed_memory()  # publishing reuses ~1 MiB buffers; see memory.py
    try:
        run(lambda: _serve(role.share_of_the_machine(settings), role), settings.server.event_loop)
    except EventLoopUnavailable as exc:
        raise CliError(str(exc)) from None
    return 0


async def _serve(settings, role) -> None:
    from aiohttp import web

    from ..app import create_app
    from ..eventloop import running_loop_name
    from ..web.connections import raise_descriptor_limit, start_site
    from ..web.session_routing import session_handover_site

    # Signals are taken over first: a SIGTERM while starting (the port may already answer /readyz while the
    # setup link is written) then shuts down cleanly once start-up is done, instead of killing the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    raise_descriptor_limit()  # the connection cap is set below it (web/connections.py)
    app = create_app(settings, role)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.server.shutdown_timeout_seconds,
                           keepalive_timeout=settings.server.keepalive_timeout_seconds)
    await runner.setup()  # runs start-up: data folder, keys, database migrations
    # The handover socket first: a session this worker starts may be asked for through it at once (by a client
    # whose next connection reaches another worker).
    handover = await session_handover_site(runner, role, settings.data_dir)
    site = await start_site(runner, settings.server, app[SERVICES].metrics, reuse_port=role.count > 1)
    port = site.port
    who = "mcpstore" if role.count == 1 else f"mcpstore {role.name}"
    print(f"{who} listening on http://{settings.server.host}:{port} (data: {Path(settings.data_dir).resolve()}, "
          f"event loop: {running_loop_name()})", flush=True)
    if role.leader:
        await _announce_setup(app, settings, port)
    await stop.wait()
    print(f"{who} shutting down: finishing requests in flight", flush=True)
    await site.close()  # stops accepting
    if handover is not None:
        await handover.stop()
    await runner.cleanup()  # closes idle connections, waits for in-flight requests up to shutdown_timeout


async def _announce_setup(app, settings, port: int) -> None:
    code = await app[SERVICES].accounts.create_setup_link_if_fresh()
    if code is None:
        return
    base = settings.server.public_url.rstrip("/") or f"http://{settings.server.host}:{port}"
    print("This registry has no users yet. Create the first administrator with either:\n"
          f"  - the one-time setup link: {base}/setup?code={code}\n"
          "  - or: mcpstore admin create-user --admin --email you@example.com --username you"
          f" --data {settings.data_dir}", flush=True)


def _copy_blob_files(src_root: Path, dest_root: Path) -> int:
    count = 0
    for path in src_root.rglob("*"):
        if path.is_file() and len(path.name) == 64:
            target = dest_root / path.relative_to(src_root)
            if not target.exists():
                private_dir(target.parent)
                shutil.copy2(path, target)
                close_to_others(target, PRIVATE_FILE_MODE)
            count += 1
    return count


def _ensure_empty(folder: Path, what: str) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise CliError(f"{what} {folder} is not empty; choose a new folder")


def run_backup(args: argparse.Namespace) -> int:
    from ..app import build_services, close_services, data_paths

    settings = settings_from(args)
    dest: Path = args.dest
    _ensure_empty(dest, "backup folder")

    async def work() -> dict:
        services = await build_services(settings, sandboxes=False)
        try:
            private_dir(dest)  # a backup holds the keys: as private as the data folder
            print(f"backing up database to {dest / 'mcpstore.sqlite3'}", file=sys.stderr)
            await services.db.backup_to(dest / "mcpstore.sqlite3")
            print("writing blob list", file=sys.stderr)
            digests = [d async for d in services.blobs.list_digests()]
        finally:
            await close_services(services)
        return {"digests": sorted(digests)}

    found = asyncio.run(work())
    paths = data_paths(settings)
    write_private_text(dest / "blobs.txt", "".join(d + "\n" for d in found["digests"]))
    shutil.copytree(paths["keys"], dest / "keys")
    if settings.storage.backend == "local":
        print(f"copying {len(found['digests'])} blobs", file=sys.stderr)
        _copy_blob_files(paths["blobs"], dest / "blobs")
    write_private_text(dest / "backup.json", json.dumps({"format": 1, "blob_backend": settings.storage.backend,
                                                         "blob_count": len(found["digests"])}))
    print(f"backup complete: {dest} ({len(found['digests'])} blobs)")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from ..app import data_paths
    from ..blobs import LocalBlobStore

    settings = settings_from(args)
    src: Path = args.src
    if not (src / "backup.json").exists() or not (src / "mcpstore.sqlite3").exists():
        raise CliError(f"{src} is not a backup written by `mcpstore backup`")
    paths = data_paths(settings)
    _ensure_empty(paths["root"], "data folder")
    private_dir(paths["root"])
    print(f"restoring database into {paths['db']}", file=sys.stderr)
    shutil.copy2(src / "mcpstore.sqlite3", paths["db"])
    private_file(paths["db"])  # copy2 copied the backup's mode
    shutil.copytree(src / "keys", paths["keys"])
    for folder, _, files in os.walk(paths["keys"]):  # key folders (keys/usage/) too: 0700, their files 0600
        private_dir(Path(folder))
        for key_file in files:
            os.chmod(Path(folder) / key_file, PRIVATE_FILE_MODE)
    wanted = [line for line in (src / "blobs.txt").read_text().split() if line]
    if (src / "blobs").is_dir():
        print(f"restoring {len(wanted)} blobs", file=sys.stderr)
        _copy_blob_files(src / "blobs", paths["blobs"])
        store = LocalBlobStore(paths["blobs"])
        missing = [d for d in wanted if not store.path_for(d).exists()]
        if missing:
            raise CliError(f"backup is missing {len(missing)} blobs, e.g. {missing[0]}")
    print(f"restore complete: {paths['root']}")
    return 0
