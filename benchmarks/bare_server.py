"""The baseline: a bare aiohttp "hello world", measured in the same run as the appliance.

Absolute req/s drift from run to run on shared machines, so benchmarks report the appliance as a ratio to
this server. It uses the same interpreter, the same event loop and no access log (like `mcpstore serve`), so
the ratio isolates what the appliance adds per request: middlewares, routing, handlers. The loop is chosen as
`mcpstore serve` chooses it (`--event-loop auto`: uvloop when installed); `--event-loop asyncio` gives the
hello world of aiohttp's defaults.

`/api/packages/{namespace}/{name}` answers any package URL with the response shape of the appliance's package
data and none of its work: a fixed JSON body of PACKAGE_BODY_BYTES (a seeded package page is ~4,000 bytes)
with the same headers. The discovery benchmark measures it next to the appliance: what that response costs
aiohttp on its own, rotating over the same 1,000 URLs.

    python benchmarks/bare_server.py --port 8081     # prints "bare listening on http://127.0.0.1:8081 (…)"
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from mcpstore_appliance import eventloop


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def healthz(request: web.Request) -> web.Response:
    # The same body and content type as the appliance's /healthz, for a like-for-like comparison.
    return web.json_response({"status": "ok"})


PACKAGE_BODY_BYTES = 4000
PACKAGE_BODY = ('{"filler":"' + "x" * (PACKAGE_BODY_BYTES - 13) + '"}').encode()
PACKAGE_HEADERS = {"Content-Type": "application/json", "ETag": '"0123456789abcdef0123456789abcdef"',
                   "Cache-Control": "no-cache", "X-Request-Id": "0a1b2c3d-1f", "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "same-origin"}


async def package_shape(request: web.Request) -> web.Response:
    return web.Response(body=PACKAGE_BODY, headers=PACKAGE_HEADERS)


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/packages/{namespace}/{name}", package_shape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"bare listening on http://{host}:{runner.addresses[0][1]} (event loop: {eventloop.running_loop_name()})",
          flush=True)
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
    parser.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto",
                        help="as mcpstore serve's server.event_loop (default auto: uvloop when installed)")
    args = parser.parse_args()
    eventloop.run(lambda: serve(args.host, args.port), args.event_loop)


if __name__ == "__main__":
    main()
