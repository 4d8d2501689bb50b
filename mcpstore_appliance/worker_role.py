"""Which worker process this is when `mcpstore serve --workers N` runs several (cli/supervisor.py).

Every worker serves every route from the shared data folder; SQLite's locking keeps their writes correct. Work
that must happen once per appliance, not once per process, runs in the leader (worker 0) only: the sweep of
crash leftovers, the payment reconciliation and payout timers, audit sealing and pruning, the mirror's update
checks, the first-start setup link, and resuming the hosted checks of a process that is gone
(catalog/pending_checks.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

ENVIRONMENT = "MCPSTORE_WORKER"  # "index/count" set by the supervisor; absent: the one process


@dataclass(frozen=True)
class WorkerRole:
    index: int = 0
    count: int = 1

    @property
    def leader(self) -> bool:
        return self.index == 0

    @property
    def name(self) -> str:
        return f"worker {self.index + 1} of {self.count}" if self.count > 1 else "single process"

    def environment(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def from_environment(cls) -> "WorkerRole":
        value = os.environ.get(ENVIRONMENT)
        if not value:
            return cls()
        index, count = value.split("/")
        return cls(int(index), int(count))

    def share_of_the_machine(self, settings: Settings) -> Settings:
        """`settings` with the machine-wide hosted limits split between the workers: `hosted.max_sessions` and
        `hosted.warm_pool_memory_mb` bound the sandboxes (and their memory) of the whole appliance, so each worker
        takes its share (at least one session). `max_sessions_per_user` stays per worker: a user's sessions land
        on whichever worker their connection reaches."""
        if self.count == 1:
            return settings
        hosted = settings.hosted
        share = hosted.model_copy(update={
            "max_sessions": max(1, hosted.max_sessions // self.count),
            "warm_pool_memory_mb": hosted.warm_pool_memory_mb // self.count})
        return settings.model_copy(update={"hosted": share})

    def socket_path(self, data_dir: Path, index: int | None = None) -> Path:
        """The Unix socket a worker also listens on, so another worker can hand it a request for a hosted session
        it holds (web/session_routing.py). In the data folder's private run/ folder."""
        return Path(data_dir) / "run" / f"worker-{self.index if index is None else index}.sock"
