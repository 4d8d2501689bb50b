"""The registry's rules on top of the schema (each is listed in tests/e2e/test_mcpb_cli_differential.py, where
`mcpb validate` and we disagree on purpose):
- `uv` servers may omit `mcp_config` (upstream's own uv example does; 2.1.2 wrongly requires it; in
  manifest_schema.py);
- the file must be UTF-8 without BOM, duplicate object keys or lone surrogates, nested at most 64 deep, and
  without control characters (tab and line breaks only in multi-line fields): manifest_text.py;
- `version` is strict SemVer 2.0.0; `name` is a lowercase slug (a-z, 0-9, `-`, `_`, `.`; at most 64);
- `server.entry_point` is a clean relative path that exists in the bundle (`binary` may add `.exe`);
  a `uv` server also needs `pyproject.toml` at the root;
- a local `icon` exists and is a real PNG, local `icons[].src` and `screenshots` exist;
- `user_config` keys are `[A-Za-z0-9_]+` (the reference puts them into a regex unescaped), a `default` fits
  the option's type, `min <= max`, and every `${user_config.X}` in `mcp_config` names a declared option;
- links are http(s) URLs (they become hrefs on package pages).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from .manifest_text import json_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z")
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")
CONFIG_KEY = re.compile(r"^[A-Za-z0-9_]+\Z")
USER_CONFIG_REF = re.compile(r"\$\{user_config\.([^}]*)\}")


class FileLookup(Protocol):
    """What validation needs to know about the files of a bundle."""

    def is_file(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def read(self, path: str, limit: int) -> bytes: ...


class DirectoryFiles:
    """FileLookup over a folder on disk (tests, local `validate` before packing)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, path: str) -> Path | None:
        if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            return None
        return self.root / path

    def is_file(self, path: str) -> bool:
        target = self._path(path)
        return bool(target and target.is_file())

    def is_dir(self, path: str) -> bool:
        target = self._path(path)
        return bool(target and target.is_dir())

    def read(self, path: str, limit: int) -> bytes:
        target = self._path(path)
        assert target is not None
        with open(target, "rb") as fh:
            return fh.read(limit)


def clean_relative(path: str) -> str | None:
    """'./server/index.js' -> 'server/index.js'; None if it is absolute, escapes, or is not a plain path."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def is_remote(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if `data` starts like a real PNG (signature + IHDR), else None."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    if struct.unpack(">I", data[8:12])[0] != 13:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None


def registry_errors(data: dict, files: FileLookup) -> list[dict]:
    problems: list[dict] = []

    def add(path: list[Any], message: str) -> None:
        problems.append({"path": json_path(path), "message": message})

    version = data.get("version")
    if isinstance(version, str) and not SEMVER.match(version):
        add(["version"], "must be a semantic version like 1.2.3 (Claude Desktop fails on anything else)")
    name = data.get("name")
    if isinstance(name, str) and not SLUG.match(name):
        add(["name"], "must be a lowercase slug: a-z, 0-9, '-', '_' or '.', at most 64 characters")
    _check_server(data.get("server"), files, add)
    _check_assets(data, files, add)
    _check_user_config(data, add)
    _check_links(data, add)
    return problems


LINK_FIELDS = (("homepage",), ("documentation",), ("support",), ("repository", "url"), ("author", "url"))


def _check_links(data: dict, add) -> None:
    """Links end up as hrefs on package pages: only http(s) (and mailto: for support), never
    javascript:, data: or file: URLs."""
    def check(path: list[Any], value: Any) -> None:
        allowed = ("https://", "http://", "mailto:") if path == ["support"] else ("https://", "http://")
        if isinstance(value, str) and not value.lower().startswith(allowed):
            add(path, "must be an http:// or https:// URL")

    for path in LINK_FIELDS:
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        check(list(path), node)
    for index, url in enumerate(_list(data.get("privacy_policies"))):
        check(["privacy_policies", index], url)


def _check_server(server: Any, files: FileLookup, add) -> None:
    if not isinstance(server, dict) or not isinstance(server.get("entry_point"), str):
        return
    entry = clean_relative(server["entry_point"])
    if entry is None:
        add(["server", "entry_point"], "must be a relative path inside the bundle")
    elif not (files.is_file(entry) or (server.get("type") == "binary" and files.is_file(entry + ".exe"))):
        add(["server", "entry_point"], f"file {entry} is not in the bundle")
    if server.get("type") == "uv" and not files.is_file("pyproject.toml"):
        add(["server", "type"], "a uv server needs pyproject.toml at the bundle root")


def _check_assets(data: dict, files: FileLookup, add) -> None:
    icon = data.get("icon")
    if isinstance(icon, str) and not is_remote(icon):
        local = clean_relative(icon)
        if "${" in icon or local is None:
            add(["icon"], "must be a relative path inside the bundle (no ${__dirname}, no absolute path)")
        elif not files.is_file(local):
            add(["icon"], f"file {local} is not in the bundle")
        elif png_size(files.read(local, 64)) is None:
            add(["icon"], f"{local} is not a PNG image")
    for index, item in enumerate(_list(data.get("icons"))):
        src = item.get("src") if isinstance(item, dict) else None
        if isinstance(src, str) and not is_remote(src):
            local = clean_relative(src)
            if local is None or not files.is_file(local):
                add(["icons", index, "src"], f"file {src} is not in the bundle")
    for index, shot in enumerate(_list(data.get("screenshots"))):
        if isinstance(shot, str) and not is_remote(shot):
            local = clean_relative(shot)
            if local is None or not files.is_file(local):
                add(["screenshots", index], f"file {shot} is not in the bundle")


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _default_fits(option: dict) -> bool:
    default, kind = option["default"], option.get("type")
    if kind == "number":
        return isinstance(default, (int, float)) and not isinstance(default, bool)
    if kind == "boolean":
        return isinstance(default, bool)
    if isinstance(default, list):
        return kind in ("directory", "file", "string") and bool(option.get("multiple"))
    return isinstance(default, str)


def _check_user_config(data: dict, add) -> None:
    options = data.get("user_config")
    options = options if isinstance(options, dict) else {}
    for key, option in options.items():
        if not CONFIG_KEY.match(key):
            add(["user_config", key], "option keys may only use letters, digits and '_'")
        if not isinstance(option, dict):
            continue
        if "default" in option and not _default_fits(option):
            add(["user_config", key, "default"], f"default does not fit type {option.get('type')!r}")
        low, high = option.get("min"), option.get("max")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            add(["user_config", key, "min"], "min is greater than max")
    config = data.get("server", {}).get("mcp_config") if isinstance(data.get("server"), dict) else None
    for path, text in _strings(config, ["server", "mcp_config"]):
        for ref in USER_CONFIG_REF.findall(text):
            if ref not in options:
                add(path, f"references ${{user_config.{ref}}}, which user_config does not declare")


def _strings(node: Any, path: list[Any]) -> Iterable[tuple[list[Any], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, path + [key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, path + [index])


def warnings_for(data: dict) -> list[dict]:
    icon = data.get("icon")
    if isinstance(icon, str) and is_remote(icon):
        return [{"path": "$.icon", "message": "remote icon URL: Claude Desktop only shows icons inside the bundle"}]
    return []
