"""packaging/mcpstore.service: Debian's systemd accepts it (`systemd-analyze verify`), rates its exposure OK
(`systemd-analyze security --offline`), and it keeps the hardening that the README promises. systemd is not
PID 1 on the test machines, so the unit is checked, not started."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT

UNIT = ROOT / "packaging" / "mcpstore.service"


def service_section() -> dict[str, list[str]]:
    """[Service] as key -> every value given (systemd allows repeated keys; configparser does not)."""
    keys: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = match[1]
        elif section == "Service" and "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_the_unit_keeps_its_hardening():
    service = service_section()
    expected = {"DynamicUser": "yes", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/mcpstore",
                "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes", "PrivateDevices": "yes",
                "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallFilter": "@system-service",
                "CapabilityBoundingSet": "", "StateDirectory": "mcpstore", "UMask": "0077"}
    for key, value in expected.items():
        assert value in service.get(key, []), f"{key}={value} is missing"
    assert service["ExecStart"] == ["/usr/local/bin/mcpstore serve --data /var/lib/mcpstore"]


@pytest.fixture
def checkable_unit(tmp_path) -> Path:
    """The unit with ExecStart on an executable that exists here (verify checks the path)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian: apt install systemd; .ci/run installs it)")
    unit = tmp_path / "mcpstore.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/mcpstore", shutil.which("true")))
    return unit


def test_systemd_accepts_the_unit(checkable_unit):
    result = subprocess.run(["systemd-analyze", "verify", str(checkable_unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mcpstore.service" not in result.stderr, result.stderr  # no warning about our unit (unknown keys...)


def test_systemd_rates_the_unit_exposure_ok(checkable_unit):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(checkable_unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for mcpstore\.service: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.0 and match[2] == "OK", match[0]
