"""The baseline: a bare aiohttp "hello world", measured in the same run as the appliance.

Absolute req/s drift from run to run on shared machines, so benchmarks report the appliance as a ratio to
this server. It uses the same interpreter, the same event loop and no access log (like `mcpstore serve`), so
the ratio isolates what the appliance adds per request: middlewares, routing, handlers.

    python benchmarks/bare_server.py --port 8081     # prints "bare listening on http://127.0.0.1:8081"
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def healthz(request: web.Request) -> web.Response:
    # The same body and content type as the appliance's /healthz, for a like-for-like comparison.
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"bare listening on http://{host}:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
