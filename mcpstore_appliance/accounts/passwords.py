"""Password hashing with argon2id (libsodium via pynacl), moderate cost for an interactive login."""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash

OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE // 2
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE * 2
MIN_LENGTH = 10
MAX_LENGTH = 1024

# Verifying against this when the account does not exist keeps the timing of "no such user" and
# "wrong password" alike.
_DUMMY_HASH = nacl.pwhash.argon2id.str(b"not a real password", opslimit=OPSLIMIT, memlimit=MEMLIMIT)


def hash_password(password: str) -> str:
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=OPSLIMIT, memlimit=MEMLIMIT).decode()


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return nacl.pwhash.verify((password_hash or _DUMMY_HASH.decode()).encode(), password.encode()) and bool(
            password_hash
        )
    except nacl.exceptions.InvalidkeyError:
        return False


def password_problem(password: str) -> str | None:
    if len(password) < MIN_LENGTH:
        return f"password must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password must be at most {MAX_LENGTH} characters"
    return None
