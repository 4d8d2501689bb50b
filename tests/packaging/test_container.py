"""The container image (packaging/Dockerfile, built by packaging/build-image.sh) on a private dockerd
(tests/docker_fixtures.py): it serves /readyz, reports healthy by its HEALTHCHECK, runs as a non-root user,
takes its settings from MCPSTORE_* variables, keeps its data in the volume, and stops with exit 0.

The base image is made offline (debootstrap + docker import, packaging/build-runtime-image.sh --appliance);
its root file system is cached as a tar in $MCPSTORE_TEST_CACHE (about 2.5 minutes the first time on a
2-core machine, a few seconds afterwards). debootstrap must be installed (.ci/run installs it)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import mcpb_cache_dir
from tests.packaging.conftest import ROOT

TAG = "mcpstore:test"
UID = 10001  # the image's user mcpstore (build-runtime-image.sh --appliance)


def docker(host: str, *args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": host}, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip()


def build_image(host: str, binary: Path) -> None:
    cache = mcpb_cache_dir()
    env = {**os.environ, "DOCKER_HOST": host, "BINARY": str(binary),
           "MCPSTORE_ROOTFS_CACHE": str(cache / "rootfs-appliance-bookworm.tar")}
    with open(cache / ".rootfs.lock", "w") as lock:  # one debootstrap per machine, even for parallel sessions
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(["bash", str(ROOT / "packaging" / "build-image.sh"), TAG], env=env,
                                capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"build-image.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def wait_until(check, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def answers_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.timeout(1200)
def test_the_image_serves_as_a_non_root_user_from_its_volume(binary, docker_engine):
    if subprocess.run(["sh", "-c", "command -v debootstrap"], capture_output=True).returncode != 0:
        pytest.fail("debootstrap is not installed (apt install debootstrap; .ci/run installs it)")
    build_image(docker_engine, binary)
    config = json.loads(docker(docker_engine, "image", "inspect", TAG))[0]["Config"]
    assert config["User"] == f"{UID}:{UID}" and "/var/lib/mcpstore" in config["Volumes"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/mcpstore/mcpstore", "health"]

    port = free_port()  # the private engine has no bridge: the container shares the host's network
    name = f"mcpstore-test-{os.getpid()}"
    docker(docker_engine, "run", "-d", "--name", name, "--network", "host", "-e", f"MCPSTORE_SERVER__PORT={port}",
           "-v", f"{name}:/var/lib/mcpstore", "--health-interval", "2s", TAG)  # the image's check, asked sooner
    try:
        url = f"http://127.0.0.1:{port}/readyz"
        wait_until(lambda: answers_ready(url), f"the container did not answer {url}:\n"
                   + docker(docker_engine, "logs", name, check=False))
        wait_until(lambda: docker(docker_engine, "inspect", "-f", "{{.State.Health.Status}}", name) == "healthy",
                   "the HEALTHCHECK did not report healthy")
        pid = docker(docker_engine, "inspect", "-f", "{{.State.Pid}}", name)
        uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        assert uids.split()[1:] == [str(UID)] * 4, uids  # real, effective, saved and file-system uid
        volume = Path(docker(docker_engine, "volume", "inspect", "-f", "{{.Mountpoint}}", name))
        database = volume / "mcpstore.sqlite3"
        assert database.stat().st_uid == UID and database.stat().st_mode & 0o777 == 0o600
        docker(docker_engine, "stop", "-t", "30", name)  # SIGTERM: requests in flight finish, then exit 0
        assert docker(docker_engine, "inspect", "-f", "{{.State.ExitCode}}", name) == "0"
    finally:
        docker(docker_engine, "rm", "-f", name, check=False)
        docker(docker_engine, "volume", "rm", name, check=False)
