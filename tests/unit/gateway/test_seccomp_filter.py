"""Where the sandbox's seccomp filter comes from: built by the host's Python (python3-seccomp), or, on a host with
no Python (the container image), the copy a binary carries (packaging/build.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mcpstore_appliance.gateway import bwrap

HAS_SECCOMP_BUILDER = Path(bwrap.SYSTEM_PYTHON).exists() and shutil.which("bwrap") is not None


@pytest.mark.skipif(not HAS_SECCOMP_BUILDER, reason="needs /usr/bin/python3 with python3-seccomp (CI installs it)")
def test_the_host_python_builds_the_filter_once(tmp_path):
    path = bwrap.build_seccomp(tmp_path / "seccomp.bpf")
    assert path == tmp_path / "seccomp.bpf" and path.stat().st_size % 8 == 0 and path.stat().st_size > 0
    built = path.read_bytes()
    assert bwrap.build_seccomp(path) == path and path.read_bytes() == built
    assert [p.name for p in tmp_path.iterdir()] == ["seccomp.bpf"]  # no staging file left


def test_without_a_host_python_the_binary_s_copy_is_used(tmp_path, monkeypatch):
    carried = tmp_path / "carried.bpf"
    carried.write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f")  # BPF "return ALLOW"
    monkeypatch.setattr(bwrap, "SYSTEM_PYTHON", str(tmp_path / "no-python"))
    monkeypatch.setattr(bwrap, "BUILT_SECCOMP", carried)
    work = tmp_path / "work"
    work.mkdir()
    assert bwrap.build_seccomp(work / "seccomp.bpf") == work / "seccomp.bpf"
    assert (work / "seccomp.bpf").read_bytes() == carried.read_bytes()


def test_without_a_host_python_or_a_carried_copy_there_is_no_filter(tmp_path, monkeypatch):
    monkeypatch.setattr(bwrap, "SYSTEM_PYTHON", str(tmp_path / "no-python"))
    monkeypatch.setattr(bwrap, "BUILT_SECCOMP", tmp_path / "absent.bpf")
    assert bwrap.build_seccomp(tmp_path / "seccomp.bpf") is None
    assert list(tmp_path.iterdir()) == []
