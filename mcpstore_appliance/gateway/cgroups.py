"""Per-sandbox cgroups for bubblewrap, which has no limit flags: memory, CPU and pids, on cgroup v1 (one
hierarchy per controller) or v2 (the unified one). The child is moved into its cgroups before it execs bwrap
(`join`, run in the child), so every process of the sandbox is counted from the first.

Sandbox cgroups are created under the appliance's own cgroup (read from /proc/self/cgroup), so a host that
delegated a subtree to the service keeps its limits around all of them. v2 was not testable on the machines
this was written on (they are v1 hybrid); it follows the kernel's documented interface.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .sandbox import SandboxLimits

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD = 100_000


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


class Cgroups:
    """The parent folders of this appliance's sandbox cgroups. `detect()` returns None where none can be made."""

    def __init__(self, version: int, parents: dict[str, Path]):
        self.version = version
        self.parents = parents  # controller (v1) or "" (v2) -> parent folder

    @classmethod
    def detect(cls, tag: str) -> "Cgroups | None":
        own = _own_paths()
        try:
            if (ROOT / "cgroup.controllers").exists():
                parent = ROOT / own.get("", "/").lstrip("/") / tag
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
                return cls(2, {"": parent})
            parents = {}
            for controller in V1_CONTROLLERS:
                parent = ROOT / controller / own.get(controller, "/").lstrip("/") / tag
                parent.mkdir(exist_ok=True)
                parents[controller] = parent
            return cls(1, parents)
        except OSError:
            return None

    def describe(self) -> str:
        return f"cgroup v{self.version} ({', '.join(self.parents) or 'memory, cpu, pids'})"

    def create(self, name: str, limits: SandboxLimits) -> "SandboxCgroup":
        folders = [parent / name for parent in self.parents.values()]
        for folder in folders:
            folder.mkdir()
        quota = max(1000, int(limits.cpus * CPU_PERIOD))
        if self.version == 2:
            folder = folders[0]
            writes = {"memory.max": limits.memory_bytes, "memory.swap.max": 0, "pids.max": limits.pids,
                      "cpu.max": f"{quota} {CPU_PERIOD}"}
            for file, value in writes.items():
                (folder / file).write_text(str(value))
        else:
            memory, pids, cpu = (self.parents[c] / name for c in V1_CONTROLLERS)
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # absent where swap accounting is off: then there is no swap to escape to
                memsw.write_text(str(limits.memory_bytes))
            (pids / "pids.max").write_text(str(limits.pids))
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        return SandboxCgroup(self.version, folders, limits)


class SandboxCgroup:
    def __init__(self, version: int, folders: list[Path], limits: SandboxLimits):
        self.version = version
        self.folders = folders
        self.limits = limits
        self._proc_files = [str(folder / "cgroup.procs") for folder in folders]

    def join(self) -> None:
        """In the child, before exec: move this process into the sandbox's cgroups."""
        for path in self._proc_files:
            with open(path, "w") as fh:
                fh.write("0")

    def oom_killed(self) -> bool:
        folder = self.folders[0]
        for name in ("memory.events", "memory.oom_control"):
            try:
                text = (folder / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip() not in ("", "0"):
                    return True
        return False

    def destroy(self) -> None:
        """Kill every process left (a fork may outlive bwrap's pid 1 for a moment), then remove the folders."""
        for _ in range(50):
            if self.version == 2:
                try:
                    (self.folders[0] / "cgroup.kill").write_text("1")
                except OSError:
                    pass
            pids = set()
            for folder in self.folders:
                try:
                    pids |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                for folder in self.folders:
                    if folder.exists():
                        folder.rmdir()
                return
            except OSError:
                time.sleep(0.02)
