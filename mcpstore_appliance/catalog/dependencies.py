"""What the catalog needs from other parts, as Protocols: `app.py` passes the real ones (the `Ledger`, the web
edge's `Metrics`), tests may pass their own, and the catalog imports neither."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ..bundles.model import Finding
from ..db import Transaction
from ..ledger.checkpoint import Checkpoint


class ReleaseLedger(Protocol):
    """The provenance ledger as the catalog uses it: leaves appended inside the catalog's own transaction, then
    a signed checkpoint and an inclusion proof for the publisher's answer."""

    async def append(self, tx: Transaction, event: dict, *, org_id: int | None = None) -> int: ...

    async def append_many(self, tx: Transaction, events: Iterable[dict], *,
                          org_id: int | None = None) -> list[int]: ...

    async def ensure_checkpoint(self, min_size: int) -> Checkpoint: ...

    async def proof_for(self, index: int, checkpoint: Checkpoint | None = None) -> dict[str, Any]: ...


class Counters(Protocol):
    """Where the publish pipeline counts its outcomes (the appliance's /metrics)."""

    def inc(self, name: str, amount: float = 1, help: str = "", **labels: str) -> None: ...


class HostedRun(Protocol):
    """One hosted check under way."""

    async def wait(self, seconds: float) -> list[Finding] | None: ...  # None: still running after `seconds`

    async def result(self) -> list[Finding]: ...

    def cancel(self) -> None: ...


class HostedCheck(Protocol):
    """Hosted execution's check at publish (gateway/publish_check.py): the bundle started once in the sandbox,
    findings for what went wrong. Absent where no sandbox works. `budget`: how long a publish waits for it;
    `start` returns once the bundle file is no longer needed."""

    budget: float

    async def start(self, bundle: Path, manifest: dict[str, Any]) -> HostedRun: ...
