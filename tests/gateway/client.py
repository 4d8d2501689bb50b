"""The official `mcp` SDK (2.3.0) as the client of the hosted endpoint, over Streamable HTTP."""

from __future__ import annotations

from contextlib import asynccontextmanager

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


@asynccontextmanager
async def mcp_session(base_url: str, ref: str, token: str):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, streamable_http_client(f"{base_url}/mcp/{ref}", http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session
