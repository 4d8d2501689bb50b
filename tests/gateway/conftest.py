"""Fixtures of the hosted-execution tests: a real appliance whose gateway runs on bubblewrap, and (for the
Docker tests) a private dockerd without a bridge plus the runtime image built by the documented script."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bubblewrap_missing() -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt install bubblewrap; .ci/run installs it)"
    if os.geteuid() != 0 and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "per-sandbox cgroups need root on a cgroup v1 host"
    return None


@pytest.fixture
async def hosted_app(start_app):
    """start(**hosted settings) -> RunningApp with the bubblewrap backend (skips where it cannot run)."""
    reason = bubblewrap_missing()
    if reason:
        pytest.skip(reason)

    async def start(**hosted):
        # The hostile test server's tools misbehave when called, so the publish-time check (which calls every
        # tool that takes no arguments) is on only where a test asks for it (test_publish_check.py).
        app = await start_app(hosted={"backend": "bubblewrap", "publish_check": False, **hosted})
        from mcpstore_appliance.web.mcp_api import GATEWAY
        gateway = app.app[GATEWAY]
        assert gateway.available, gateway.status
        return app

    return start


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory):
    """A private dockerd (no bridge, no iptables) and the skeleton runtime image; yields its DOCKER_HOST."""
    missing = [tool for tool in ("dockerd", "docker") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt install docker.io; .ci/run installs it)")
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root")
    root = Path("/tmp") / f"mcpstore-dockerd-{os.getpid()}"  # short: unix socket paths are limited to 108 bytes
    root.mkdir(exist_ok=True)
    host = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "wb")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "dockerd.pid"), "-H", host, "--iptables=false", "--ip6tables=false",
         "--bridge=none"], stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "DOCKER_HOST": host}
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-500:]}")
            time.sleep(0.2)
        subprocess.run(["bash", str(REPO / "packaging" / "build-runtime-image.sh"), "--skeleton",
                        "mcpstore-runtime:skeleton"], env=env, check=True, capture_output=True, timeout=120)
        yield host
    finally:
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
