"""Which asyncio event loop `mcpstore serve` runs on.

uvloop (libuv under the asyncio API) when it is installed: the appliance's cheap, hot requests spend most of
their time in the event loop and transport, not in our code, and uvloop's are cheaper (figures in
benchmarks/README.md). `asyncio` stays selectable, for a platform without uvloop (it does not build on
Windows) or to rule the loop out while debugging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


class EventLoopUnavailable(RuntimeError):
    """`event_loop = "uvloop"` was asked for where uvloop is not installed."""


def loop_factory(choice: EventLoopChoice):
    """The factory for `choice` (None: asyncio's default). `auto` means uvloop if installed, else asyncio."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise EventLoopUnavailable("server.event_loop is \"uvloop\" but uvloop is not installed "
                                       "(pip install uvloop, or set it to \"auto\" or \"asyncio\")") from None
        return None
    return uvloop.new_event_loop


def running_loop_name() -> str:
    """"uvloop" or "asyncio": the loop this coroutine runs on (servers print it when they start)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run(main: Callable[[], Coroutine[Any, Any, Any]], choice: EventLoopChoice) -> Any:
    """asyncio.run(main()) on the chosen loop: a fresh loop, closed at the end. `main` is called only once the
    loop is known, so an unavailable loop leaves no coroutine never awaited."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main())
