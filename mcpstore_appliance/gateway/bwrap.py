"""The bubblewrap backend: namespaces (no network, own pids), the host's /usr read-only as the runtime, the
bundle read-only at /app, a size-capped /tmp, uid 65534, no capabilities, a seccomp deny list where the
system Python can build one, and per-sandbox cgroups (cgroups.py) for memory, CPU and pids.

The server's environment (with the buyer's user_config values) is bwrap's own environment, never --setenv:
bwrap's argv is readable by anyone on the host in /proc.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from ..resources import PACKAGE_DIR
from .cgroups import Cgroups, SandboxCgroup
from .runtime import APP_DIR, Launch
from .sandbox import SandboxLimits, StderrTail

log = logging.getLogger("mcpstore.gateway")
SYSTEM_PYTHON = "/usr/bin/python3"
BUILT_SECCOMP = PACKAGE_DIR / "gateway" / "seccomp.bpf"  # only in a binary (packaging/build.sh)
# The deny list of sandbox.md §4: kernel attack surface no MCP server needs; clone3 -> ENOSYS so that libc
# falls back to clone, whose CLONE_NEWUSER flag can then be refused.
SECCOMP_SCRIPT = r"""
import errno, sys, seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in ("ptrace mount umount2 pivot_root unshare setns bpf perf_event_open keyctl add_key request_key "
             "userfaultfd kexec_load kexec_file_load init_module finit_module delete_module open_by_handle_at "
             "name_to_handle_at process_vm_readv process_vm_writev swapon swapoff reboot syslog acct quotactl "
             "lookup_dcookie io_uring_setup io_uring_enter io_uring_register fanotify_init clock_settime "
             "settimeofday iopl ioperm").split():
    try:
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    except Exception:
        pass
f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, 0x10000000, 0x10000000))
f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
with open(sys.argv[1], "wb") as out:
    f.export_bpf(out)
"""


def build_seccomp(path: Path) -> Path | None:
    """The BPF deny list, built once by the system Python's libseccomp binding (Debian python3-seccomp), or the
    one a binary carries (packaging/build.sh built it on the machine kind it was built for), for hosts with no
    Python (the container image)."""
    if path.exists():
        return path
    if not Path(SYSTEM_PYTHON).exists() and BUILT_SECCOMP.exists():
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        shutil.copyfile(BUILT_SECCOMP, staging)
        os.replace(staging, path)
        return path
    # Written under a name of its own and renamed into place: workers of `serve --workers N` starting together
    # on a fresh data folder build it at once, and none may read the file while another truncates and rewrites it.
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        subprocess.run([SYSTEM_PYTHON, "-c", SECCOMP_SCRIPT, str(staging)], check=True, capture_output=True,
                       timeout=30)
        os.replace(staging, path)
    except (OSError, subprocess.SubprocessError):
        staging.unlink(missing_ok=True)
        return None
    return path


class BubblewrapBackend:
    name = "bubblewrap"

    def __init__(self, bwrap: str, cgroups: Cgroups | None, seccomp: Path | None):
        self.bwrap = bwrap
        self.cgroups = cgroups
        self.seccomp = seccomp

    @classmethod
    async def detect(cls, hosted, work_dir: Path) -> "BubblewrapBackend | None":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError("bwrap is not installed (apt install bubblewrap)")
        cgroups = Cgroups.detect(f"mcpstore-{os.getpid()}")
        if cgroups is None:
            raise RuntimeError("no per-sandbox cgroups can be created here (memory, CPU and pids limits)")
        backend = cls(bwrap, cgroups, await asyncio.to_thread(build_seccomp, work_dir / "seccomp.bpf"))
        probe = await asyncio.create_subprocess_exec(
            *backend.argv(work_dir, ("/usr/bin/true",), 1 << 20), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={})
        _, err = await probe.communicate()
        if probe.returncode != 0:
            raise RuntimeError(f"bwrap does not start here: {err.decode(errors='replace').strip()[:200]}")
        return backend

    def describe(self) -> str:
        seccomp = "seccomp deny list" if self.seccomp else "no seccomp filter (apt install python3-seccomp)"
        return f"bubblewrap ({self.bwrap}; {self.cgroups.describe() if self.cgroups else 'no cgroups'}; {seccomp})"

    def argv(self, bundle_dir: Path, command: tuple[str, ...], tmpfs_bytes: int, seccomp_fd: int | None = None) -> list[str]:
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
                "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
                "--ro-bind-try", "/etc/ssl/certs", "/etc/ssl/certs",
                "--ro-bind", str(bundle_dir), APP_DIR, "--proc", "/proc", "--dev", "/dev",
                "--size", str(tmpfs_bytes), "--tmpfs", "/tmp", "--remount-ro", "/",
                "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--chdir", APP_DIR]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        return [*args, "--", *command]

    async def close(self) -> None:
        if self.cgroups:
            for parent in self.cgroups.parents.values():
                try:
                    parent.rmdir()
                except OSError:
                    pass

    async def start(self, bundle_dir: Path, launch: Launch, limits: SandboxLimits) -> "BwrapSandbox":
        name = f"s-{uuid.uuid4().hex[:16]}"
        cgroup = await asyncio.to_thread(self.cgroups.create, name, limits) if self.cgroups else None
        seccomp_fd = os.open(self.seccomp, os.O_RDONLY) if self.seccomp else None
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv(bundle_dir, launch.argv, limits.tmpfs_bytes, seccomp_fd),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(launch.env),
                pass_fds=(seccomp_fd,) if seccomp_fd is not None else (), start_new_session=True,
                preexec_fn=cgroup.join if cgroup else None, limit=1 << 16)
        except BaseException:
            if cgroup:
                await asyncio.to_thread(cgroup.destroy)
            raise
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        return BwrapSandbox(name, process, cgroup, limits)


class BwrapSandbox:
    def __init__(self, name: str, process: asyncio.subprocess.Process, cgroup: SandboxCgroup | None,
                 limits: SandboxLimits):
        self.name = name
        self.process = process
        self.cgroup = cgroup
        self.limits = limits
        self.stderr = StderrTail()
        self._stderr_task = asyncio.create_task(self.stderr.drain(process.stderr))
        self._killed = False

    async def read(self, n: int) -> bytes:
        return await self.process.stdout.read(n)

    def write(self, data: bytes) -> None:
        self.process.stdin.write(data)

    async def drain(self) -> None:
        await self.process.stdin.drain()

    async def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.cgroup:
            await asyncio.to_thread(self.cgroup.destroy)
        await self.process.wait()
        self._stderr_task.cancel()

    async def exit_reason(self) -> str | None:
        if self.cgroup and self.cgroup.oom_killed():
            return f"out of memory ({self.limits.memory_bytes // (1024 * 1024)} MB)"
        try:
            code = await asyncio.wait_for(asyncio.shield(self.process.wait()), 1.0)
        except asyncio.TimeoutError:
            return None
        return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
