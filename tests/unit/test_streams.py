"""read_capped: a body that arrives in pieces is read to its end, and a longer one is cut at limit + 1."""

import asyncio

from mcpstore_appliance.streams import read_capped


class Trickle:
    """A stream that hands out its bytes a few at a time, as a body split across packets arrives."""

    def __init__(self, data: bytes, piece: int):
        self.data, self.piece = data, piece

    async def read(self, n: int = -1) -> bytes:
        await asyncio.sleep(0)
        chunk, self.data = self.data[:min(n, self.piece)], self.data[min(n, self.piece):]
        return chunk


async def test_a_body_in_pieces_is_read_to_its_end():
    assert await read_capped(Trickle(b"x" * 1000, 7), 1000) == b"x" * 1000
    assert await read_capped(Trickle(b"", 7), 10) == b""


async def test_a_longer_body_is_cut_one_byte_past_the_limit():
    assert await read_capped(Trickle(b"y" * 5000, 300), 1000) == b"y" * 1001
