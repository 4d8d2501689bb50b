"""HTTP client side of the CLI: stored credentials and JSON/streaming requests to a registry.

Credentials live in the user's config folder (`$MCPSTORE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/mcpstore`,
else `~/.config/mcpstore`) in `credentials.json`, mode 0600.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from .progress import ProgressBar

CHUNK = 256 * 1024


class CliError(Exception):
    """A failure to report to the user as one plain line, exiting non-zero."""


def config_dir() -> Path:
    if os.environ.get("MCPSTORE_CONFIG_DIR"):
        return Path(os.environ["MCPSTORE_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mcpstore"


def write_private_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(temp, path)


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def save_credentials(registry: str, token: str, username: str) -> None:
    data = read_json_file(credentials_path())
    data.setdefault("registries", {})[registry.rstrip("/")] = {"token": token, "username": username}
    data["default"] = registry.rstrip("/")
    write_private_json(credentials_path(), data)


@dataclass
class Registry:
    url: str
    token: str | None = None

    @classmethod
    def from_config(cls, url: str | None = None, need_token: bool = False) -> "Registry":
        data = read_json_file(credentials_path())
        url = (url or os.environ.get("MCPSTORE_REGISTRY") or data.get("default") or "").rstrip("/")
        if not url:
            raise CliError("no registry given: pass --registry URL or run `mcpstore login --registry URL` first")
        token = os.environ.get("MCPSTORE_TOKEN") or data.get("registries", {}).get(url, {}).get("token")
        if need_token and not token:
            raise CliError(f"not logged in to {url}: run `mcpstore login --registry {url}`")
        return cls(url, token)

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(self.url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.netloc, timeout=300, context=ssl.create_default_context())
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.netloc, timeout=300)
        else:
            raise CliError(f"registry URL must start with http:// or https://, not {self.url!r}")
        return conn, parts.path.rstrip("/")

    def request(self, method: str, path: str, *, query: dict | None = None, json_body: Any = None,
                body: BinaryIO | None = None, size: int | None = None, headers: dict | None = None,
                progress_label: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn, base = self._connection()
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        target = base + path + ("?" + urlencode({k: v for k, v in query.items() if v is not None}) if query else "")
        payload: Any = None
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Length"] = str(size)
            payload = _ProgressReader(body, ProgressBar(size, progress_label)) if progress_label else body
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"cannot reach {self.url}: {exc}") from None
        finally:
            if isinstance(payload, _ProgressReader):
                payload.bar.finish()
            conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        status, _, data = self.request(method, path, **kwargs)
        return check_json(status, data)

    def download(self, path: str, destination: BinaryIO, label: str) -> dict[str, str]:
        conn, base = self._connection()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            conn.request("GET", base + path, headers=headers)
            response = conn.getresponse()
            if response.status >= 400:
                check_json(response.status, response.read())
            bar = ProgressBar(int(response.getheader("Content-Length") or 0), label)
            while chunk := response.read(CHUNK):
                destination.write(chunk)
                bar.advance(len(chunk))
            bar.finish()
            return {k.lower(): v for k, v in response.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"download from {self.url} failed: {exc}") from None
        finally:
            conn.close()


def check_json(status: int, data: bytes) -> Any:
    try:
        parsed = json.loads(data) if data else None
    except json.JSONDecodeError:
        parsed = None
    if status >= 400:
        error = (parsed or {}).get("error", {}) if isinstance(parsed, dict) else {}
        message = error.get("message") or data[:200].decode(errors="replace") or f"HTTP {status}"
        raise CliError(f"registry answered {status}: {message}", error.get("details"))
    return parsed


class _ProgressReader:
    """A file-like body that advances a progress bar as http.client reads it."""

    def __init__(self, inner: BinaryIO, bar: ProgressBar):
        self.inner = inner
        self.bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self.inner.read(CHUNK if size is None or size < 0 else size)
        self.bar.advance(len(chunk))
        return chunk
