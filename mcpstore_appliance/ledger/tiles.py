"""C2SP tlog-tiles paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`.

`<N>` is written in groups of three digits, every group but the last prefixed with "x": 1234067 → x001/x234/067.
A tile holds 256 hashes (or entries); a partial tile `.p/<W>` holds the first W (1..255).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
_GROUP = re.compile(r"^x\d{3}$")
_LAST = re.compile(r"^\d{3}$")
_WIDTH = re.compile(r"^[1-9]\d{0,2}$")
MAX_GROUPS = 7  # 10^21 tiles: more than a 2^63 tree can have


@dataclass(frozen=True)
class TileRef:
    level: int | None  # None for an entry bundle
    n: int
    width: int  # 256 for a full tile

    @property
    def is_entries(self) -> bool:
        return self.level is None

    def path(self) -> str:
        kind = "entries" if self.level is None else str(self.level)
        suffix = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        return f"tile/{kind}/{format_index(self.n)}{suffix}"

    def leaves_needed(self) -> int:
        """The tree size from which this tile exists."""
        level = 0 if self.level is None else self.level
        return (self.n * TILE_WIDTH + self.width) << (TILE_HEIGHT * level)

    def hash_nodes(self) -> list[tuple[int, int]]:
        """The tree nodes (level, n) whose hashes the tile holds (hash tiles only)."""
        assert self.level is not None
        height = TILE_HEIGHT * self.level
        first = self.n * TILE_WIDTH
        return [(height, first + i) for i in range(self.width)]


def format_index(n: int) -> str:
    digits = str(n)
    digits = digits.zfill((len(digits) + 2) // 3 * 3)
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def parse_tile_path(path: str) -> TileRef:
    """Parse the part after `tile/`. Raises InvalidInput with a plain message for anything malformed."""
    parts = path.split("/")
    if len(parts) < 2:
        raise InvalidInput("a tile path is tile/<L>/<N> or tile/entries/<N>", code="invalid_tile_path")
    kind, rest = parts[0], parts[1:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.match(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise InvalidInput("a partial tile width is 1 to 255", code="invalid_tile_path")
        width = int(rest[-1])
        rest = rest[:-2] + [rest[-2][:-2]]
    if not rest or len(rest) > MAX_GROUPS or not _LAST.match(rest[-1]) or not all(_GROUP.match(g) for g in rest[:-1]):
        raise InvalidInput("a tile index is written like x001/x234/067", code="invalid_tile_path")
    if len(rest) > 1 and rest[0] == "x000":
        raise InvalidInput("a tile index has no leading zero groups", code="invalid_tile_path")
    n = int("".join(g.lstrip("x") for g in rest))
    if kind == "entries":
        return TileRef(None, n, width)
    if not re.fullmatch(r"0|[1-9]\d?", kind) or int(kind) > MAX_LEVEL:
        raise InvalidInput("a tile level is 0 to 63", code="invalid_tile_path")
    return TileRef(int(kind), n, width)


def tiles_for_size(size: int) -> list[TileRef]:
    """Every hash tile (full and right-edge partial) a client may fetch for a tree of `size`."""
    refs = []
    level = 0
    while True:
        count = size >> (TILE_HEIGHT * level)  # hashes at tree height 8·level
        if count == 0:
            break
        full, partial = divmod(count, TILE_WIDTH)
        refs += [TileRef(level, n, TILE_WIDTH) for n in range(full)]
        if partial:
            refs.append(TileRef(level, full, partial))
        level += 1
    return refs


def encode_entries(leaves: list[bytes]) -> bytes:
    out = bytearray()
    for leaf in leaves:
        out += len(leaf).to_bytes(2, "big") + leaf
    return bytes(out)


def decode_entries(bundle: bytes) -> list[bytes]:
    leaves, i = [], 0
    while i < len(bundle):
        if i + 2 > len(bundle):
            raise ValueError("truncated entry bundle")
        length = int.from_bytes(bundle[i:i + 2], "big")
        if i + 2 + length > len(bundle):
            raise ValueError("truncated entry bundle")
        leaves.append(bundle[i + 2:i + 2 + length])
        i += 2 + length
    return leaves
