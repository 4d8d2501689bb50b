"""A private dockerd for the tests that need a Docker engine (hosted execution's Docker backend in
tests/gateway/, the appliance's container image in tests/packaging/): one per session, without a bridge or
iptables rules, its data in /tmp; started on first use and stopped by its process id. Needs root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def docker_engine():
    """Yields the private engine's DOCKER_HOST (skips where dockerd is missing or the user is not root)."""
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
        yield host
    finally:
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
