"""A real OpenID provider for the SSO tests: NanoIDP 3.4.0 from PyPI (Flask; OIDC with PKCE enforced, RS256 ID
tokens with a `kid`), run offline on a loopback port. See /work/shared/reference/enterprise.md §6.

It lives in its own virtual environment in the test cache ($MCPSTORE_TEST_CACHE, default ~/.cache/mcpstore-tests;
about a minute to install once; `.ci/run` installs it before the tests with `python -m tests.nanoidp_fixtures`).
Each start writes a config folder: settings.yaml (issuer, `require_pkce`, one confidential client whose redirect
URI is the appliance's /sso/callback) and users.yaml (users with e-mail and groups).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VERSION = "3.4.0"
CLIENT_ID = "mcpstore"
CLIENT_SECRET = "nanoidp-client-secret"


def cache_dir() -> Path:
    return Path(os.environ.get("MCPSTORE_TEST_CACHE") or Path.home() / ".cache" / "mcpstore-tests") / "nanoidp"


def ensure_nanoidp() -> Path:
    """The `nanoidp` program (installed into its venv now if missing; `.installed` says it completed)."""
    venv = cache_dir() / "venv"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"nanoidp=={VERSION}"], check=True)
            (venv / ".installed").touch()
    return venv / "bin" / "nanoidp"


def _yaml_list(items: list[str]) -> str:
    return json.dumps(items)  # a JSON list is a YAML flow sequence


def write_config(folder: Path, port: int, redirect_uri: str, users: dict[str, dict]) -> str:
    issuer = f"http://127.0.0.1:{port}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.yaml").write_text(f"""config_version: 1
server:
  host: "127.0.0.1"
  port: {port}
oauth:
  issuer: "{issuer}"
  audience: "mcpstore-api"
  token_expiry_minutes: 10
  require_pkce: true
  clients:
    - client_id: "{CLIENT_ID}"
      client_secret: "{CLIENT_SECRET}"
      redirect_uris: {_yaml_list([redirect_uri])}
""")
    lines = ["config_version: 1", "users:"]
    for name, user in users.items():
        lines += [f"  {name}:", f"    password: {json.dumps(user['password'])}",
                  f"    email: {json.dumps(user['email'])}", f"    groups: {_yaml_list(user.get('groups', []))}"]
    (folder / "users.yaml").write_text("\n".join(lines) + "\n")
    return issuer


@contextlib.contextmanager
def nanoidp(folder: Path, port: int, redirect_uri: str, users: dict[str, dict]):
    """NanoIDP serving on 127.0.0.1:port until the block ends; yields its issuer URL."""
    program = ensure_nanoidp()
    issuer = write_config(folder, port, redirect_uri, users)
    log = open(folder / "nanoidp.log", "wb")
    process = subprocess.Popen([str(program), "--config", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=folder)  # it writes keys/ in its cwd
    try:
        _wait_ready(issuer, process, folder)
        yield issuer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(issuer: str, process: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"NanoIDP exited: {(folder / 'nanoidp.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("NanoIDP did not start within 60 s")


if __name__ == "__main__":  # .ci/run: install once before the tests
    print(ensure_nanoidp())
