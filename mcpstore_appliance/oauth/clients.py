"""Dynamic client registration (RFC 7591) of public clients, and the checks of what they register.

Only public clients (`token_endpoint_auth_method: none`; PKCE protects the code): an MCP host runs on a
user's machine and cannot keep a secret. A client that asks for a secret-based method is registered as public
anyway, which RFC 7591 §3.2.1 allows and the MCP SDK accepts. Redirect URIs are https, or http on a loopback
address (native apps, RFC 8252 §7.3); never a fragment or user info, and at most a few of them.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import OAuthError

MAX_REDIRECT_URIS = 5
MAX_URI_CHARS = 2000
MAX_NAME_CHARS = 100
SCOPES = ("invoke",)  # the accounts' scope that /mcp/ needs (accounts/models.py); tokens carry no other
GRANT_TYPES = ("authorization_code", "refresh_token")
LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Client:
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]


def _bad(message: str, error: str = "invalid_client_metadata") -> OAuthError:
    return OAuthError(error, message)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: Any) -> str:
    if not isinstance(uri, str) or not 0 < len(uri) <= MAX_URI_CHARS:
        raise _bad(f"each redirect URI must be a string of 1-{MAX_URI_CHARS} characters", "invalid_redirect_uri")
    if any(c.isspace() or not c.isprintable() for c in uri):
        raise _bad("a redirect URI may not contain spaces or control characters", "invalid_redirect_uri")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise _bad("a redirect URI may not have a fragment", "invalid_redirect_uri")
    if "@" in parts.netloc or not parts.hostname:
        raise _bad("a redirect URI needs a host and no user info", "invalid_redirect_uri")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return uri
    raise _bad("redirect URIs must be https, or http on a loopback address (127.0.0.1, [::1], localhost)",
               "invalid_redirect_uri")


def _string_list(body: dict, name: str, default: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    value = body.get(name, list(default))
    if not isinstance(value, list) or not value or len(value) > 10 or not all(isinstance(v, str) for v in value):
        raise _bad(f"{name} must be a non-empty list of strings")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _bad(f"{name} {unknown} are not supported here; use {list(allowed)}")
    return sorted(set(value), key=value.index)


def check_scope(scope: Any) -> str:
    """The scope a client may ask for: a subset of SCOPES (absent: all of them)."""
    if scope is None or scope == "":
        return " ".join(SCOPES)
    if not isinstance(scope, str) or len(scope) > 200:
        raise OAuthError("invalid_scope", "scope must be a space-separated string")
    unknown = sorted(set(scope.split()) - set(SCOPES))
    if unknown:
        raise OAuthError("invalid_scope", f"unknown scopes {unknown}; this server grants {list(SCOPES)}")
    return " ".join(sorted(set(scope.split())))


def registration(body: Any) -> dict[str, Any]:
    """The metadata a registration request asks for, checked; what the client will be answered (without
    client_id). Unknown members are ignored, as RFC 7591 §2 asks."""
    if not isinstance(body, dict):
        raise _bad("the registration must be a JSON object")
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not 0 < len(uris) <= MAX_REDIRECT_URIS:
        raise _bad(f"redirect_uris must list 1-{MAX_REDIRECT_URIS} URIs", "invalid_redirect_uri")
    name = body.get("client_name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or any(not c.isprintable() for c in name):
        raise _bad(f"client_name must be printable text of at most {MAX_NAME_CHARS} characters")
    return {
        "client_name": name.strip() or "an unnamed application",
        "redirect_uris": [check_redirect_uri(uri) for uri in dict.fromkeys(uris)],
        "grant_types": _string_list(body, "grant_types", GRANT_TYPES, GRANT_TYPES),
        "response_types": _string_list(body, "response_types", ("code",), ("code",)),
        "token_endpoint_auth_method": "none",
        "scope": check_scope(body.get("scope")),
    }


class Clients:
    def __init__(self, db, documents=None):
        """`documents`: client_documents.ClientDocuments, for a client_id that is an https URL."""
        self.db = db
        self.documents = documents

    async def register(self, body: Any) -> dict[str, Any]:
        metadata = registration(body)
        client_id = "mcpc_" + secrets.token_urlsafe(18)
        issued_at = int(time.time())
        answer = {"client_id": client_id, "client_id_issued_at": issued_at, **metadata}
        async with self.db.write() as tx:
            await tx.insert("oauth_clients", {
                "client_id": client_id, "client_name": metadata["client_name"],
                "redirect_uris": json.dumps(metadata["redirect_uris"]), "metadata_json": json.dumps(answer),
                "created_at": issued_at})
        return answer

    async def get(self, client_id: Any) -> Client | None:
        """A registered client, or the one a client ID metadata document describes (fetched or kept)."""
        if self.documents is not None and isinstance(client_id, str) and client_id.startswith("https://"):
            return await self.documents.get(client_id)
        if not isinstance(client_id, str) or not client_id.startswith("mcpc_") or len(client_id) > 64:
            return None
        row = await self.db.fetch_one("SELECT * FROM oauth_clients WHERE client_id = ?", (client_id,))
        if row is None:
            return None
        return Client(row["client_id"], row["client_name"], tuple(json.loads(row["redirect_uris"])))
