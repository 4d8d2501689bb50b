"""Password hashing with argon2id (libsodium via pynacl) at libsodium's interactive cost (t=2, 64 MiB).

Hashing takes tens of milliseconds and 64 MiB, so the account service runs it in a worker thread
behind a small semaphore: the event loop never stalls on it and a flood of logins cannot claim
unbounded memory.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash

OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
MIN_LENGTH = 10
MAX_LENGTH = 1024
CONCURRENT_HASHES = 2  # hashes in flight at once (each holds MEMLIMIT bytes)

# Verifying against this when the account does not exist keeps the timing of "no such user" and
# "wrong password" alike. A fixed string (the hash of a throwaway password with the same cost), so
# that importing this module does not spend a hash.
_DUMMY_HASH = b"$argon2id$v=19$m=65536,t=2,p=1$qtnLdrvIry8MSkwhnVpTDA$doWoZOprxuCHU8Tfz1QD1RIdD27ZPkI5fNEIu2wqZAI"


def hash_password(password: str) -> str:
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=OPSLIMIT, memlimit=MEMLIMIT).decode()


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        matched = nacl.pwhash.verify((password_hash or "").encode() or _DUMMY_HASH, password.encode())
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False
    return matched and bool(password_hash)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_LENGTH:
        return f"password must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password must be at most {MAX_LENGTH} characters"
    return None
