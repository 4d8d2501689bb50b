"""Finding the `MCPB_SIG_V1 … MCPB_SIG_END` block(s) at the end of a bundle, and hashing what they cover.

Layout (mcpb-format.md §7): `ZIP | "MCPB_SIG_V1" | u32le N | DER[N] | "MCPB_SIG_END"`, the footer being the last
bytes of the file. Unlike the reference we require the footer at EOF and the length field to land exactly on the
footer; a file that ends in a footer but has no well-formed block is a broken signature, not an unsigned file.
Signing a signed file appends a second block covering the first ("nested"); we peel up to MAX_BLOCKS.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import Unprocessable

MARKERS = ((b"MCPB_SIG_V1", b"MCPB_SIG_END"), (b"DXT_SIG_V1", b"DXT_SIG_END"))
MAX_DER_BYTES = 1024 * 1024  # a CMS blob with a few certificates is a few KB; this bounds the tail we read
MAX_BLOCKS = 4
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SignatureBlock:
    start: int  # offset of the header = length of the bytes this block signs
    end: int  # offset just past the footer
    der: bytes

    @property
    def length(self) -> int:
        return self.end - self.start


def _bad(message: str) -> Unprocessable:
    return Unprocessable(message, code="signature_invalid", details=[{"path": "(signature block)", "message": message}])


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def _peel_one(fh: BinaryIO, end: int) -> SignatureBlock | None:
    for header, footer in MARKERS:
        if end < len(footer) or _read_at(fh, end - len(footer), len(footer)) != footer:
            continue
        footer_pos = end - len(footer)
        window_start = max(0, footer_pos - MAX_DER_BYTES - len(header) - 4)
        window = _read_at(fh, window_start, footer_pos - window_start)
        # Walk header candidates backwards: a DER blob could contain the header bytes, so the right one is the
        # one whose length field ends exactly at the footer.
        pos = window.rfind(header)
        while pos >= 0:
            length_at = pos + len(header)
            if length_at + 4 <= len(window):
                (n,) = struct.unpack_from("<I", window, length_at)
                if length_at + 4 + n == len(window):
                    return SignatureBlock(window_start + pos, end, window[length_at + 4:])
            pos = window.rfind(header, 0, pos)
        raise _bad("the file ends with a signature footer but has no well-formed signature block")
    return None


def split_signature_blocks(fh: BinaryIO, size: int) -> tuple[int, tuple[SignatureBlock, ...]]:
    """Return (end of the ZIP bytes, signature blocks outermost first)."""
    blocks: list[SignatureBlock] = []
    end = size
    while True:
        block = _peel_one(fh, end)
        if block is None:
            return end, tuple(blocks)
        if len(blocks) == MAX_BLOCKS:
            raise _bad(f"more than {MAX_BLOCKS} nested signature blocks")
        blocks.append(block)
        end = block.start


class PositionalReader:
    """A read-only file object over a descriptor using pread: it never moves the descriptor's own offset, so
    another thread can read the same open file at the same time."""

    def __init__(self, fd: int):
        self._fd, self._pos = fd, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, os.fstat(self._fd).st_size - self._pos)
        data = os.pread(self._fd, size, self._pos)
        self._pos += len(data)
        return data


def hash_prefixes(fh: BinaryIO, cuts: list[int], patch: tuple[int, int] | None = None,
                  algorithm: str = "sha256") -> dict[int, bytes]:
    """Digest of fh[0:cut] for every cut, in one pass.

    With `patch=(offset, cut)`, also returns under key -cut the digest of fh[0:cut] with the two bytes at
    `offset` replaced by zeros (the EOCD comment_length of the upstream-main signing variant).
    """
    wanted = sorted(set(cuts))
    digests: dict[int, bytes] = {}
    main = hashlib.new(algorithm)
    patched = None
    pos = 0
    stops = sorted(set(wanted + ([patch[0], patch[0] + 2] if patch else [])))
    fh.seek(0)
    for stop in stops:
        while pos < stop:
            data = fh.read(min(CHUNK, stop - pos))
            if not data:
                raise Unprocessable("the bundle changed while it was read", code="bundle_truncated")
            main.update(data)
            if patched is not None:
                patched.update(data)
            pos += len(data)
        if patch and stop == patch[0]:
            patched = main.copy()
            original = fh.read(2)
            main.update(original)
            patched.update(b"\0\0")
            pos += 2
        if stop in wanted:
            digests[stop] = main.digest()
            if patch and stop == patch[1] and patched is not None:
                digests[-stop] = patched.digest()
    return digests
