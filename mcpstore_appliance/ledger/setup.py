"""Build the ledger (and its witness) from settings; `app.py` calls this once."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from ..config import ConfigError, Settings
from ..db import Database
from ..keys import load_or_create_signing_key
from .checkpoint import valid_origin
from .note import NoteError
from .service import Ledger
from .witness import Witness, default_witness_name


def build_ledger(db: Database, settings: Settings, signing_key: SigningKey, keys_dir: Path) -> Ledger:
    origin = settings.ledger_origin
    if not valid_origin(origin):
        raise ConfigError(f"config: ledger.origin {origin!r} must be non-empty, without spaces or '+'")
    witness_name = settings.ledger.witness_name or default_witness_name(origin)
    # A separate key for cosigning other logs, so a witness signature can never be mistaken for our own
    # checkpoint signature and the two can be rotated apart.
    witness_key = load_or_create_signing_key(Path(keys_dir) / "witness.key")
    try:
        witness = Witness(db, witness_key, witness_name, settings.ledger.witnessed_logs)
        return Ledger(db, signing_key, origin, settings.ledger, witness=witness)
    except NoteError as exc:
        raise ConfigError(f"config: ledger.witnesses / ledger.witnessed_logs: {exc}") from None
