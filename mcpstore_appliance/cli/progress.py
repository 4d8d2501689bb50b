"""A dependency-free progress bar for uploads and downloads (stderr, redrawn in place on a TTY)."""

from __future__ import annotations

import sys
import time


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


class ProgressBar:
    def __init__(self, total: int, label: str, stream=None, width: int = 30):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.interactive = self.stream.isatty()

    def advance(self, amount: int) -> None:
        if amount <= 0:  # the final empty read: nothing new to show
            return
        self.done += amount
        now = time.monotonic()
        if now - self.last_draw >= 0.1 or self.done >= self.total:
            self.last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(self.width * fraction)
        rate = self.done / max(now - self.started, 1e-6)
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:6.1%} "
                f"{human_bytes(self.done)}/{human_bytes(self.total)} {human_bytes(rate)}/s")
        if self.interactive:
            self.stream.write("\r" + line)
        elif self.done >= self.total or fraction * 10 % 1 < 0.05:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
