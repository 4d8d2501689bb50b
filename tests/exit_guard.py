"""The test run ends when its summary is printed, whatever a test left behind.

A CI run once printed "1681 passed" and then never exited. Two kinds of leftovers can do that: a process
that a test started and that outlived it (a daemon double-forks away from its parent and keeps the output
pipe open), or a worker thread that interpreter exit joins while it waits on something that never comes.
So: orphaned descendants are re-parented to this process (a child subreaper on Linux), and after the summary
every leftover process is named and killed; a leftover thread that still holds the exit after a grace
period is named with its stack, and the process exits with the run's status.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
EXIT_GRACE_SECONDS = 60.0
_status = {"exit": 0}


def pytest_configure(config) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def pytest_sessionfinish(session, exitstatus) -> None:
    _status["exit"] = int(exitstatus)


def pytest_unconfigure(config) -> None:
    for pid, command in _children():
        print(f"exit_guard: killing leftover process {pid}: {command}", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    threading.Thread(target=_exit_if_held, name="exit-guard", daemon=True).start()


def _children() -> list[tuple[int, str]]:
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == me and fields[0] != "Z":
                found.append((int(stat.parent.name), (stat.parent / "cmdline").read_bytes()
                              .replace(b"\0", b" ").decode(errors="replace")[:200]))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def _exit_if_held() -> None:
    time.sleep(EXIT_GRACE_SECONDS)  # a daemon thread: if the exit finishes first, this never wakes
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.ident in frames:
            stack = "".join(traceback.format_stack(frames[thread.ident]))
            print(f"exit_guard: thread {thread.name!r} still holds the exit:\n{stack}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(_status["exit"])
