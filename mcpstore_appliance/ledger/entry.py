"""A ledger entry as stored, and the errors and callbacks the ledger's readers share."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import note as notes


@dataclass(frozen=True)
class Entry:
    index: int
    leaf: bytes  # the exact leaf bytes that were hashed
    leaf_hash: bytes
    org_id: int | None  # set for a sealed (private) leaf
    opening: bytes | None  # sealed leaves: the event's canonical JSON
    salt: str | None

    def public_view(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": notes.b64(self.leaf_hash),
            "leaf": self.leaf.decode("utf-8"),
            "event": json.loads(self.leaf),
        }

    def opened_event(self) -> dict[str, Any] | None:
        """A sealed entry's event (from its opening); None for a public entry."""
        return None if self.opening is None else json.loads(self.opening)

    def member_view(self) -> dict[str, Any]:
        """The public view plus, for a sealed entry, its opening: the salt and the exact event bytes, which
        a member's client checks against the commitment in the leaf (`events.opens`)."""
        view = self.public_view()
        if self.opening is not None:
            view["sealed"] = {"salt": self.salt, "event": self.opening.decode("utf-8")}
        return view


# Decides from a sealed entry's event whether the caller may see it (the catalog's visibility rule).
MayOpen = Callable[[dict[str, Any]], bool]


class LedgerInconsistent(RuntimeError):
    """The stored tree contradicts a checkpoint this log already signed."""
