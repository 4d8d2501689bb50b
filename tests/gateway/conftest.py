"""Fixtures of the hosted-execution tests: a real appliance whose gateway runs on bubblewrap, and (for the
Docker tests) the private dockerd of tests/docker_fixtures.py plus the runtime image built by the documented script."""

from __future__ import annotations

import os
import shutil
import subprocess
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
def dockerd(docker_engine):
    """The private dockerd (tests/docker_fixtures.py) with the skeleton runtime image; yields its DOCKER_HOST."""
    subprocess.run(["bash", str(REPO / "packaging" / "build-runtime-image.sh"), "--skeleton",
                    "mcpstore-runtime:skeleton"], env={**os.environ, "DOCKER_HOST": docker_engine}, check=True,
                   capture_output=True, timeout=120)
    return docker_engine
