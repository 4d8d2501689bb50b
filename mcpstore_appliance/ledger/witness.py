"""This appliance as a C2SP tlog-witness: cosign other logs' checkpoints once they prove consistency.

The witness keeps only the latest checkpoint it cosigned per origin (table `ledger_witnessed`). A request is
`old <size>\\n`, up to 63 base64 consistency-proof lines, a blank line, then the log's signed checkpoint.
Answers (tlog-witness v1.0.0): unknown origin 404, no valid log signature 403, `old` not the size we last
cosigned 409 (body `<size>\\n`), old > new 400, a proof that fails 422; success is the cosignature line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from nacl.signing import SigningKey

from ..config import WitnessPeer
from ..db import Database
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge, Unprocessable
from . import note as notes
from .checkpoint import CheckpointError, open_checkpoint, parse_unverified
from .merkle import HASH_SIZE, ProofError, verify_consistency

MAX_BODY_BYTES = 64 * 1024
MAX_PROOF_LINES = 63
_OLD_LINE = re.compile(r"^old (0|[1-9][0-9]{0,18})$")
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class WitnessConflict(Conflict):
    """`old` is not the size this witness last cosigned; the log should retry from `size`."""

    def __init__(self, size: int):
        super().__init__(f"this witness last cosigned size {size}", code="witness_size_mismatch",
                         details={"size": size})
        self.size = size


@dataclass(frozen=True)
class AddCheckpoint:
    old: int
    proof: list[bytes]
    checkpoint: str


def default_witness_name(origin: str) -> str:
    base = origin[: -len("/ledger")] if origin.endswith("/ledger") else origin
    return f"{base}/witness"


def format_request(old: int, proof: list[bytes], checkpoint_note: str) -> bytes:
    lines = [f"old {old}"] + [notes.b64(h) for h in proof]
    return ("\n".join(lines) + "\n\n" + checkpoint_note).encode("utf-8")


def parse_request(body: bytes) -> AddCheckpoint:
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge("add-checkpoint body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("add-checkpoint body is not UTF-8", code="malformed_request") from None
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise InvalidInput("add-checkpoint body needs a blank line before the checkpoint", code="malformed_request")
    lines = head.split("\n")
    match = _OLD_LINE.match(lines[0])
    if not match:
        raise InvalidInput("add-checkpoint body must start with 'old <size>'", code="malformed_request")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise InvalidInput(f"at most {MAX_PROOF_LINES} consistency proof lines", code="malformed_request")
    proof = []
    for line in lines[1:]:
        try:
            h = notes.unb64(line, "proof line")
        except notes.NoteError:
            h = b""
        if len(h) != HASH_SIZE:
            raise InvalidInput("each proof line is the base64 of a 32-byte hash", code="malformed_request")
        proof.append(h)
    return AddCheckpoint(int(match.group(1)), proof, checkpoint)


class Witness:
    def __init__(self, db: Database, signing_key: SigningKey, name: str, logs: list[WitnessPeer],
                 clock: Callable[[], float] = time.time):
        self.db = db
        self.name = name
        self._signing_key = signing_key
        self._verifier = notes.verifier_for(name, signing_key, notes.ALG_COSIGNATURE_V1)
        self._clock = clock
        self.logs: dict[str, list[notes.Verifier]] = {}
        for peer in logs:
            verifier = notes.parse_vkey(peer.key)
            self.logs.setdefault(peer.name or verifier.name, []).append(verifier)

    def verifier_key(self) -> str:
        return self._verifier.vkey()

    async def add_checkpoint(self, body: bytes) -> str:
        """Handle one add-checkpoint request; return the cosignature line."""
        request = parse_request(body)
        try:
            unverified = parse_unverified(request.checkpoint)
        except (notes.NoteError, CheckpointError) as exc:
            raise InvalidInput(f"malformed checkpoint: {exc}", code="malformed_checkpoint") from None
        verifiers = self.logs.get(unverified.origin)
        if verifiers is None:
            raise NotFound(f"this witness does not follow the log {unverified.origin!r}", code="unknown_log")
        try:
            checkpoint = open_checkpoint(request.checkpoint, verifiers, unverified.origin)
        except (notes.NoteError, CheckpointError) as exc:
            raise Forbidden(f"the checkpoint is not signed by a known key of this log: {exc}",
                            code="bad_log_signature") from None
        if request.old > checkpoint.size:
            raise InvalidInput(f"old size {request.old} is larger than the checkpoint size {checkpoint.size}",
                               code="old_after_new")
        async with self.db.write() as tx:
            state = await tx.fetch_one("SELECT size, root FROM ledger_witnessed WHERE origin = ?",
                                       (checkpoint.origin,))
            known_size = 0 if state is None else state["size"]
            if request.old != known_size:
                raise WitnessConflict(known_size)
            self._check_proof(request, known_size, None if state is None else bytes(state["root"]), checkpoint)
            await tx.execute(
                "INSERT INTO ledger_witnessed (origin, size, root, note, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,"
                " note = excluded.note, updated_at = excluded.updated_at",
                (checkpoint.origin, checkpoint.size, checkpoint.root, checkpoint.note, self._clock()))
        return notes.cosign(checkpoint.body, self.name, self._signing_key, int(self._clock())).line()

    @staticmethod
    def _check_proof(request: AddCheckpoint, known_size: int, known_root: bytes | None, checkpoint) -> None:
        if known_size == 0:
            if request.proof:
                raise Unprocessable("a proof from size 0 must be empty", code="bad_proof")
            return
        if known_size == checkpoint.size:
            if request.proof or known_root != checkpoint.root:
                raise Unprocessable("same size as the last cosigned checkpoint but a different root or a proof",
                                    code="bad_proof")
            return
        try:
            verify_consistency(known_size, checkpoint.size, known_root, checkpoint.root, request.proof)
        except ProofError as exc:
            raise Unprocessable(f"consistency proof does not verify: {exc}", code="bad_proof") from None

    async def state(self, origin: str) -> dict | None:
        return await self.db.fetch_one("SELECT origin, size, note FROM ledger_witnessed WHERE origin = ?", (origin,))
