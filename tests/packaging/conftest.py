"""The `mcpstore` binary (packaging/build.sh's mcpstore.tar.gz), built once and cached by a hash of what goes
into it, and a clean environment to run it in: no Python on PATH, no PYTHON* variables, an empty HOME.

The cache lives in $MCPSTORE_TEST_CACHE (default ~/.cache/mcpstore-tests)/binary/<hash>/: a build takes 1-4
minutes on a 2-core machine, and reruns with unchanged sources reuse it. A file lock keeps parallel sessions
from building twice; older builds are removed once a new one is in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import mcpb_cache_dir

ROOT = Path(__file__).resolve().parents[2]
# What the binary is made of: a change to any of these makes a new build.
INPUTS = ("mcpstore_appliance", "templates", "static", "packaging/build.sh", "packaging/mcpstore_entry.py",
          "setup.py", "pyproject.toml")


def sources_hash() -> str:
    digest = hashlib.sha256(f"{sys.version} {sys.prefix}".encode())
    for name in INPUTS:
        top = ROOT / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".so"):
                digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def binary() -> Path:
    """The binary as shipped, mcpstore.tar.gz (built here when the cache has none for these sources)."""
    cache = mcpb_cache_dir() / "binary"
    cache.mkdir(parents=True, exist_ok=True)
    key = sources_hash()
    built = cache / key / "mcpstore.tar.gz"
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            result = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--out", str(cache / f"{key}.tmp")],
                                    env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                                    timeout=900, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, \
                f"packaging/build.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            shutil.rmtree(cache / key, ignore_errors=True)  # what a crashed build may have left
            (cache / f"{key}.tmp").rename(cache / key)
            for old in cache.iterdir():
                if old.is_dir() and old.name != key:
                    shutil.rmtree(old, ignore_errors=True)
    return built


def clean_environment(tmp_path: Path, binary: Path) -> dict[str, str]:
    """The archive unpacked as a user would (opt/mcpstore/, linked from bin/); PATH holds only bin/ with
    `mcpstore` and a shell's basics: no python, no venv; HOME is empty."""
    (tmp_path / "opt").mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "opt"), "-xzf", str(binary)], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mcpstore").symlink_to(tmp_path / "opt" / "mcpstore" / "mcpstore")
    for tool in ("sh", "cat", "ls"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": str(bin_dir), "HOME": str(home), "LANG": "C.UTF-8", "TZ": "UTC",
           "MCPSTORE_HOSTED__BACKEND": "off"}  # the test bundle's server is not run in a sandbox here
    for python in ("python3", "python", f"python3.{sys.version_info[1]}"):
        assert shutil.which(python, path=env["PATH"]) is None, f"{python} is on the clean PATH"
    assert not any(name.startswith("PYTHON") or name == "VIRTUAL_ENV" for name in env)
    return env
