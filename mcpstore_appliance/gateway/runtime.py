"""From a manifest to what the sandbox runs: an allowlisted runtime, its argv and environment.

`server.type` and `mcp_config.command` map to an allowlist: node -> /usr/bin/node, python/python3 ->
/usr/bin/python3, binary -> a file inside the bundle (/app). Nothing a bundle names runs from the host.
`mcp_config` is substituted as in mcpb-format.md §6 with `${__dirname}` = /app. `user_config` values reach the
server through environment variables only: a sensitive field referenced in `args` is refused, so no secret
ever sits in an argv (visible in /proc to the host) or a log line.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Unprocessable

APP_DIR = "/app"
RUNTIMES = {"node": "/usr/bin/node", "python": "/usr/bin/python3", "python3": "/usr/bin/python3"}
COMMANDS_BY_TYPE = {"node": {"node"}, "python": {"python", "python3"}}
HOSTED_TYPES = ("node", "python", "binary")
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
SYSTEM_DIRS = {"HOME": "/tmp", "DESKTOP": "/tmp", "DOCUMENTS": "/tmp", "DOWNLOADS": "/tmp"}
_VARIABLE = re.compile(r"\$\{([^}]+)\}")


@dataclass(frozen=True)
class Launch:
    """What one sandbox runs: argv[0] is an allowlisted runtime path or a file under /app."""

    runtime: str  # "node", "python" or "binary"
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict, repr=False)  # repr=False: values may be secrets


def refuse(message: str, code: str = "hosted_runtime_refused") -> Unprocessable:
    return Unprocessable(message, code=code)


def is_hosted_type(manifest: dict) -> bool:
    server = manifest.get("server") or {}
    return server.get("type") in HOSTED_TYPES


def launch_for(manifest: dict, user_values: dict[str, Any] | None = None) -> Launch:
    """The Launch of a manifest's server with a user's `user_config` values (defaults fill the rest)."""
    server = manifest.get("server") or {}
    kind = server.get("type")
    if kind not in HOSTED_TYPES:
        raise refuse(f"server type {kind!r} cannot be hosted (allowed: {', '.join(HOSTED_TYPES)})")
    config = dict(server.get("mcp_config") or {})
    override = (config.get("platform_overrides") or {}).get("linux") or {}
    config.update({k: v for k, v in override.items() if k in ("command", "args", "env")})
    fields = manifest.get("user_config") or {}
    values = _user_values(fields, user_values or {})
    variables = {"__dirname": APP_DIR, "pathSeparator": "/", "/": "/", **SYSTEM_DIRS,
                 **{f"user_config.{k}": v for k, v in values.items()}}
    secret_names = {f"user_config.{k}" for k, spec in fields.items() if isinstance(spec, dict) and spec.get("sensitive")}
    args = _args(config.get("args") or [], variables, secret_names)
    program = _program(kind, config.get("command"), server.get("entry_point"), variables)
    if not config.get("command") and server.get("entry_point") and kind != "binary":
        args = [posixpath.join(APP_DIR, server["entry_point"]), *args]
    env = dict(BASE_ENV)
    for name, value in (config.get("env") or {}).items():
        if isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and isinstance(value, str):
            env[name] = _substitute(value, variables)
    return Launch(kind, (program, *args), env)


def _user_values(fields: dict, given: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, spec in fields.items():
        spec = spec if isinstance(spec, dict) else {}
        value = given.get(key, spec.get("default"))
        if value is None:
            if spec.get("required"):
                raise refuse(f"this server needs the setting {key!r}; set it before calling", "user_config_missing")
            continue
        values[key] = _stringify(value)
    return values


def _stringify(value: Any) -> Any:
    """JavaScript's String(v) for scalars (true, 10, 1.5); arrays stay arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    return str(value)


def _substitute(text: str, variables: dict[str, Any]) -> str:
    def one(match: re.Match) -> str:
        value = variables.get(match.group(1))
        return value if isinstance(value, str) else match.group(0)  # unknown or array: left literal (§6.7, §6.8)

    return _VARIABLE.sub(one, text)


def _args(raw: list, variables: dict[str, Any], secret_names: set[str]) -> list[str]:
    args: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise refuse("mcp_config.args must be strings")
        named = set(_VARIABLE.findall(item))
        if named & secret_names:
            raise refuse("a sensitive user_config value is passed in mcp_config.args; hosted servers get secrets "
                         "only through mcp_config.env")
        whole = _VARIABLE.fullmatch(item)
        if whole and isinstance(variables.get(whole.group(1)), list):
            args += variables[whole.group(1)]  # an array value expands into several arguments (§6.7)
        else:
            args.append(_substitute(item, variables))
    return args


def _program(kind: str, command: Any, entry_point: Any, variables: dict[str, Any]) -> str:
    if kind in COMMANDS_BY_TYPE:
        name = command or kind
        if name not in COMMANDS_BY_TYPE[kind]:
            raise refuse(f"command {name!r} is not an allowed runtime for a {kind} server "
                         f"(allowed: {', '.join(sorted(COMMANDS_BY_TYPE[kind]))})")
        return RUNTIMES[name]
    target = _substitute(command, variables) if isinstance(command, str) else entry_point
    if not isinstance(target, str) or not target:
        raise refuse("a binary server needs mcp_config.command or server.entry_point inside the bundle")
    path = posixpath.normpath(target if target.startswith("/") else posixpath.join(APP_DIR, target))
    if not path.startswith(APP_DIR + "/"):
        raise refuse(f"a binary server runs a file inside the bundle, not {target!r}")
    return path
