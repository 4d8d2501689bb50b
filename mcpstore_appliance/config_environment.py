"""Settings from `MCPSTORE_*` environment variables, and how one layer of settings overrides another
(config.py: defaults < config.toml < environment < command-line flags)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

ENV_PREFIX = "MCPSTORE_"
# MCPSTORE_* variables that belong to the client CLI and the test/benchmark tooling, not to the
# appliance's settings: a user with `MCPSTORE_TOKEN` exported must still be able to run `mcpstore serve`.
NOT_SETTINGS = frozenset({
    "MCPSTORE_CONFIG_DIR", "MCPSTORE_REGISTRY", "MCPSTORE_TOKEN", "MCPSTORE_PASSWORD",
    "MCPSTORE_ADMIN_PASSWORD", "MCPSTORE_LOG_LEVEL", "MCPSTORE_TEST_CACHE",
    "MCPSTORE_WORKER",  # which worker process this is (worker_role.py), set by `serve --workers N`
})


def env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`MCPSTORE_SECTION__KEY=value` as {"section": {"key": value}}."""
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = parse_env_value(raw)
    return overrides


def parse_env_value(raw: str) -> Any:
    # Lists and tables come as JSON; everything else stays a string and pydantic converts it.
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
    return raw


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`base` with `top` laid over it, table by table."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_error(error: ValidationError, where: str) -> str:
    """The first problem as one line naming the key and where the settings came from."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"config: unknown key '{key}' in {where}"
    return f"config: invalid value for '{key}' in {where}: {first['msg']}"
