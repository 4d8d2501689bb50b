"""Shared CLI plumbing for operator commands: settings from flags, services run in-process."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import Settings, load_settings

T = TypeVar("T")


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", help="data folder (default ./mcpstore-data, or data_dir in config)")
    parser.add_argument("--config", metavar="FILE", type=Path, help="config.toml")


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "data", None):
        overrides["data_dir"] = args.data
    return load_settings(getattr(args, "config", None), **overrides)


def with_services(args: argparse.Namespace, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the appliance's services on the data folder, run `work(services)`, close them."""
    from ..app import build_services, close_services

    async def run() -> T:
        services = await build_services(settings_from(args), sandboxes=False)
        try:
            return await work(services)
        finally:
            await close_services(services)

    return asyncio.run(run())
