"""The data folder is private to the service user: the folder 0700, every folder in it 0700, every file 0600
(database with its -wal and -shm files, keys, blobs, temporary uploads), whatever the umask; and so are a
backup and a restored folder. Checked by walking the folders a real app, a real publish and the real CLI made."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.integration.test_cli_operator import PASSWORD, run
from tests.seed import publish


@pytest.fixture(autouse=True)
def open_umask():
    """The usual umask, under which files are made readable by everyone unless the appliance says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[path.relative_to(folder).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


def open_to_others(folder: Path) -> dict[str, int]:
    """Everything in `folder` (and itself) that is not a 0700 folder or a 0600 file."""
    return {name: oct(mode) for name, mode in modes(folder).items()
            if mode != (0o700 if (folder / name).is_dir() else 0o600)}


async def test_everything_the_appliance_writes_is_private(start_app):
    app = await start_app()
    _, token = await app.user("alice")
    published = await publish(app, token, "tool", "1.0.0")
    found = modes(app.data_dir)
    sha = published["sha256"]
    # what this test is about is really there: the database with its WAL files, keys, a blob in its fan-out
    assert {"mcpstore.sqlite3", "mcpstore.sqlite3-wal", "mcpstore.sqlite3-shm", "keys/ledger.key", "keys/jwt.key",
            "tmp", "blobs/tmp", f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"} <= set(found)
    assert open_to_others(app.data_dir) == {}


async def test_a_folder_left_open_by_an_earlier_version_is_closed_on_start(start_app, tmp_path):
    data = tmp_path / "old"
    app = await start_app(data_dir=data)
    await app.user("alice")
    for name in (".", "blobs", "tmp", "keys"):
        os.chmod(data / name, 0o755)
    for name in ("mcpstore.sqlite3", "mcpstore.sqlite3-wal", "mcpstore.sqlite3-shm"):
        os.chmod(data / name, 0o644)
    again = await start_app(data_dir=data)  # another process on the same folder, as `serve` after an upgrade
    assert (await again.client.get("/healthz"))[0] == 200
    assert open_to_others(data) == {}


def test_a_backup_and_a_restored_folder_are_private(tmp_path):
    data, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    assert run("admin", "create-user", "--email", "c@example.com", "--username", "cat", "--password-stdin",
               "--data", str(data), input=PASSWORD + "\n").returncode == 0
    (tmp_path / "bundle.bin").write_bytes(os.urandom(4096))
    import asyncio

    from mcpstore_appliance.blobs import open_blob_store
    from mcpstore_appliance.config import load_settings

    async def put():
        store = open_blob_store(load_settings(environ={}, data_dir=str(data)))
        try:
            return await store.put_file(tmp_path / "bundle.bin")
        finally:
            await store.close()

    sha = asyncio.run(put()).sha256
    result = run("backup", str(backup), "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert {"mcpstore.sqlite3", "keys/ledger.key", "blobs.txt", "backup.json", f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"} \
        <= set(modes(backup))
    assert open_to_others(backup) == {}
    os.chmod(backup / "mcpstore.sqlite3", 0o644)  # a backup that was opened up on its way
    result = run("restore", str(backup), "--data", str(restored))
    assert result.returncode == 0, result.stderr
    assert f"blobs/{sha[:2]}/{sha[2:4]}/{sha}" in modes(restored)
    assert open_to_others(restored) == {}
