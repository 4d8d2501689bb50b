"""Client-side verification of a bundle against a registry's ledger (`mcpstore verify`).

Trust on first use: the first run pins the registry's ledger key (or `--key` pins one explicitly) and every run
keeps the newest checkpoint it has verified. A later checkpoint is accepted only with a consistency proof from
the stored one, so a registry that rewrites history (a fork) is caught even though each checkpoint is signed.

The HTTP transport is injected (`fetch(path, query) -> (status, body)`) so this module stays free of any HTTP
library and works against any registry that serves the /ledger API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from . import note as notes
from .checkpoint import Checkpoint, CheckpointError, open_checkpoint, parse_unverified
from .events import SEALED, opens
from .merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion

Fetch = Callable[[str, dict[str, Any] | None], tuple[int, bytes]]

# One exit status per failure kind, so scripts can tell them apart (1 = could not run, 2 = usage).
EXIT_CODES = {
    "unknown_bundle": 3,
    "bytes_mismatch": 4,
    "bad_proof": 5,
    "bad_signature": 6,
    "different_key": 7,
    "inconsistent_log": 8,
    "missing_witness": 9,
    "registry_error": 10,
}


class VerifyFailure(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]


@dataclass
class TrustState:
    """What this client remembers about one registry's log."""

    key: str | None = None
    checkpoint: str | None = None  # the newest verified checkpoint note

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrustState":
        return cls(key=data.get("key"), checkpoint=data.get("checkpoint"))

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "checkpoint": self.checkpoint}


@dataclass
class VerifyResult:
    index: int
    event: dict[str, Any]
    checkpoint: Checkpoint
    witnesses: list[str]
    status_events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class BundleVerifier:
    def __init__(self, fetch: Fetch, state: TrustState, *, key: str | None = None,
                 witnesses: list[str] | None = None, quorum: int | None = None):
        self.fetch = fetch
        self.state = state
        self.explicit_key = key
        self.witnesses = [notes.parse_vkey(w) for w in witnesses or []]
        self.quorum = len(self.witnesses) if quorum is None else quorum
        self.messages: list[str] = []
        self.trusted = False  # True once the served checkpoint verified and is consistent with the stored one
        self.proofs: dict[int, list[str]] = {}  # the verified inclusion proofs, by index (a mirror keeps them)

    # --- transport helpers ----------------------------------------------------------------------------

    def _get(self, path: str, query: dict[str, Any] | None = None, *, missing_ok: bool = False) -> bytes | None:
        status, body = self.fetch(path, query)
        if status == 404 and missing_ok:
            return None
        if status != 200:
            detail = body[:200].decode("utf-8", "replace")
            raise VerifyFailure("registry_error", f"the registry answered {status} for {path}: {detail}")
        return body

    def _get_json(self, path: str, query: dict[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        body = self._get(path, query, missing_ok=missing_ok)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise VerifyFailure("registry_error", f"the registry sent malformed JSON for {path}") from None

    # --- steps ----------------------------------------------------------------------------------------

    def pinned_key(self) -> notes.Verifier:
        served_text = self._get("/ledger/key").decode("utf-8", "replace").strip()
        if self.explicit_key:
            wanted = notes.parse_vkey(self.explicit_key).vkey()
            if self.state.key and self.state.key != wanted:
                self.messages.append("pinned the ledger key given with --key (replacing the earlier pin)")
                self.state.checkpoint = None  # history under another key says nothing about this one
            self.state.key = wanted
        elif not self.state.key:
            try:
                self.state.key = notes.parse_vkey(served_text).vkey()
            except notes.NoteError as exc:
                raise VerifyFailure("bad_signature", f"the registry's ledger key is malformed: {exc}") from None
            self.messages.append(f"pinned ledger key {self.state.key} (first use)")
        if served_text != self.state.key:
            raise VerifyFailure("different_key",
                                f"the registry now presents ledger key {served_text!r}, but {self.state.key!r} is "
                                "pinned; if the operator really rotated the key, re-pin it with --key")
        return notes.parse_vkey(self.state.key)

    def checkpoint(self, verifier: notes.Verifier) -> tuple[Checkpoint, list[str]]:
        text = self._get("/ledger/checkpoint").decode("utf-8", "replace")
        try:
            checkpoint = open_checkpoint(text, [verifier])
        except notes.UnverifiedNote as exc:
            if exc.bad_signature:
                raise VerifyFailure("bad_signature", f"the checkpoint signature does not verify: {exc}") from None
            raise VerifyFailure("different_key", "the checkpoint is not signed by the pinned ledger key") from None
        except (notes.NoteError, CheckpointError) as exc:
            raise VerifyFailure("bad_signature", f"the checkpoint is malformed: {exc}") from None
        try:
            cosigned = notes.cosignatures_by(notes.parse(text), self.witnesses)
        except notes.UnverifiedNote as exc:
            raise VerifyFailure("bad_signature", f"a witness cosignature does not verify: {exc}") from None
        if len(cosigned) < self.quorum:
            missing = sorted({w.name for w in self.witnesses} - set(cosigned))
            raise VerifyFailure("missing_witness", f"the checkpoint lacks cosignatures from: {', '.join(missing)}")
        return checkpoint, sorted(cosigned)

    def check_consistency(self, checkpoint: Checkpoint) -> None:
        """Prove the served checkpoint and the stored one describe the same history; keep the newer."""
        if not self.state.checkpoint:
            self.state.checkpoint = checkpoint.note
            return
        pinned = parse_unverified(self.state.checkpoint)
        if pinned.origin != checkpoint.origin:
            raise VerifyFailure("inconsistent_log", f"the log origin changed from {pinned.origin!r} to "
                                                    f"{checkpoint.origin!r}")
        older, newer = sorted((pinned, checkpoint), key=lambda c: c.size)
        if older.size == 0:
            pass  # every tree extends the empty tree
        elif older.size == newer.size:
            if older.root != newer.root:
                raise VerifyFailure("inconsistent_log", f"two different roots were signed for size {older.size}: "
                                                        "the log forked")
        else:
            answer = self._get_json("/ledger/proof/consistency", {"old": older.size, "new": newer.size})
            try:
                proof = [notes.unb64(h, "proof hash") for h in answer["consistency_proof"]]
                verify_consistency(older.size, newer.size, older.root, newer.root, proof)
            except (KeyError, TypeError, notes.NoteError, ProofError) as exc:
                raise VerifyFailure("inconsistent_log",
                                    f"checkpoint {newer.size} is not consistent with checkpoint {older.size} "
                                    f"({exc}): the log forked or rewrote history") from None
        if checkpoint.size > pinned.size:
            self.state.checkpoint = checkpoint.note

    def entry(self, index: int) -> tuple[bytes, dict[str, Any]]:
        answer = self._get_json(f"/ledger/entries/{index}")
        try:
            leaf = answer["leaf"].encode("utf-8")
            event = json.loads(leaf)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise VerifyFailure("registry_error", f"ledger entry {index} is malformed") from None
        if not isinstance(event, dict):
            raise VerifyFailure("registry_error", f"ledger entry {index} is not an event")
        if event.get("kind") == SEALED:
            event = self._opened(index, leaf, answer.get("sealed"))
        return leaf, event

    @staticmethod
    def _opened(index: int, leaf: bytes, opening: Any) -> dict[str, Any]:
        """A private release's event, from the opening the registry gives its members: accepted only if it
        opens the commitment that the log recorded (the leaf is what the inclusion proof covers)."""
        try:
            salt, data = opening["salt"], opening["event"].encode("utf-8")
            event = json.loads(data)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise VerifyFailure("registry_error", f"ledger entry {index} is sealed and the registry sent no "
                                                  "opening for it") from None
        if not opens(leaf, salt, data) or not isinstance(event, dict):
            raise VerifyFailure("bad_proof", f"the opening of sealed entry {index} does not match the commitment "
                                             "in the log")
        return event

    def inclusion(self, index: int, leaf: bytes, checkpoint: Checkpoint) -> None:
        if index >= checkpoint.size:
            raise VerifyFailure("registry_error", f"entry {index} is newer than the checkpoint ({checkpoint.size});"
                                                  " try again in a few seconds")
        answer = self._get_json("/ledger/proof/inclusion", {"index": index, "size": checkpoint.size})
        try:
            proof = [notes.unb64(h, "proof hash") for h in answer["inclusion_proof"]]
            verify_inclusion(index, checkpoint.size, leaf_hash(leaf), proof, checkpoint.root)
        except (KeyError, TypeError, notes.NoteError, ProofError) as exc:
            raise VerifyFailure("bad_proof", f"the inclusion proof of entry {index} does not verify against the "
                                             f"signed checkpoint: {exc}") from None
        self.proofs[index] = [notes.b64(h) for h in proof]

    def find_indices(self, sha256: str, release: str | None) -> list[int]:
        if release:
            namespace, name, version = parse_release(release)
            path = f"/ledger/release/{quote(namespace, safe='')}/{quote(name, safe='')}/{quote(version, safe='')}"
            answer = self._get_json(path)
            if not answer.get("indices"):
                raise VerifyFailure("unknown_bundle", f"the ledger has no entry for {release}")
            return answer["indices"]
        answer = self._get_json(f"/ledger/lookup/{sha256}")
        indices = answer.get("indices") if isinstance(answer, dict) else None
        if not indices:
            raise VerifyFailure("unknown_bundle", f"the ledger has no entry for a bundle with sha256 {sha256}")
        return indices

    # --- the whole check --------------------------------------------------------------------------------

    def run(self, sha256: str, size: int, *, release: str | None = None) -> VerifyResult:
        verifier = self.pinned_key()
        checkpoint, witnessed = self.checkpoint(verifier)
        self.check_consistency(checkpoint)
        self.trusted = True
        indices = self.find_indices(sha256, release)
        publish: tuple[int, dict[str, Any]] | None = None
        status_events = []
        for index in indices:
            leaf, event = self.entry(index)
            if event.get("kind") == "publish":
                if event.get("sha256") != sha256:
                    raise VerifyFailure("bytes_mismatch",
                                        f"the ledger records sha256 {event.get('sha256')} for "
                                        f"{describe(event)} (entry {index}), but this file has sha256 {sha256}")
                self.inclusion(index, leaf, checkpoint)
                publish = publish or (index, event)
            elif event.get("sha256") in (None, sha256):
                self.inclusion(index, leaf, checkpoint)
                status_events.append({"index": index, **event})
        if publish is None:
            raise VerifyFailure("unknown_bundle", f"the ledger has no publish entry for sha256 {sha256}")
        index, event = publish
        if event.get("size") != size:
            raise VerifyFailure("bytes_mismatch", f"the ledger records {event.get('size')} bytes for "
                                                  f"{describe(event)}, but this file has {size}")
        return VerifyResult(index, event, checkpoint, witnessed, status_events, list(self.messages))


def parse_release(release: str) -> tuple[str, str, str]:
    """`namespace/name@version`."""
    head, at, version = release.rpartition("@")
    namespace, slash, name = head.partition("/")
    if not (at and slash and namespace and name and version):
        raise ValueError("a release is written namespace/name@version")
    return namespace, name, version


def describe(event: dict[str, Any]) -> str:
    return f"{event.get('namespace')}/{event.get('name')}@{event.get('version')}"
