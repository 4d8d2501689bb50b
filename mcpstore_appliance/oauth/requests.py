"""The checks of an authorisation request (RFC 6749 §4.1.1 with OAuth 2.1's PKCE and RFC 8707's `resource`).

Order matters: the client and its redirect URI are checked first, and while either is in doubt nothing is
redirected (ClientRefused); every later problem goes back to the client's redirect URI as `error=...`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .clients import Client, check_scope
from .errors import ClientRefused, OAuthError

PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1 (verifier) and §4.2 (S256 challenge)
MAX_STATE_CHARS = 500
# The path of a hosted endpoint below the base URL: the only resources this server issues tokens for.
RESOURCE_PATH = re.compile(r"/mcp/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/([A-Za-z0-9][A-Za-z0-9._-]{0,127})")


@dataclass(frozen=True)
class AuthorizationRequest:
    client: Client
    redirect_uri: str
    state: str | None
    code_challenge: str
    resource: str  # the audience of the tokens: {base_url}/mcp/{namespace}/{name}
    scope: str
    namespace: str
    name: str

    def form_fields(self) -> dict[str, str]:
        """What the consent form carries back (every value is checked again when it is posted)."""
        fields = {"response_type": "code", "client_id": self.client.client_id, "redirect_uri": self.redirect_uri,
                  "code_challenge": self.code_challenge, "code_challenge_method": "S256",
                  "resource": self.resource, "scope": self.scope}
        return fields if self.state is None else {**fields, "state": self.state}


def redirect_uri_for(client: Client, asked: str | None) -> str:
    """The registered redirect URI the request names (exactly); without one, the client's only one."""
    if asked is None or asked == "":
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0]
        raise ClientRefused("invalid_request", "this client registered several redirect URIs: name one")
    if asked not in client.redirect_uris:
        raise ClientRefused("invalid_request", "redirect_uri is not one this client registered")
    return asked


def resource_of(base_url: str, resource: str | None) -> tuple[str, str, str]:
    """(resource, namespace, name) of a hosted endpoint of this appliance; anything else is invalid_target."""
    if not resource:
        raise OAuthError("invalid_target", "send the resource parameter (RFC 8707): the URL of the MCP endpoint")
    canonical = resource.rstrip("/")
    parts = urlsplit(canonical)
    base = urlsplit(base_url)
    same_origin = (parts.scheme.lower(), parts.netloc.lower()) == (base.scheme.lower(), base.netloc.lower())
    path = parts.path[len(base.path.rstrip("/")):] if parts.path.startswith(base.path.rstrip("/")) else ""
    match = RESOURCE_PATH.fullmatch(path)
    if not same_origin or match is None or parts.query or parts.fragment:
        raise OAuthError("invalid_target", "resource must be a hosted MCP endpoint of this registry "
                                           f"({base_url}/mcp/<namespace>/<name>)")
    return f"{base_url}{path}", match.group(1), match.group(2)


def check_request(client: Client | None, params: Mapping[str, str], base_url: str) -> AuthorizationRequest:
    if client is None:
        raise ClientRefused("invalid_client", "unknown client_id: the application must register first")
    redirect_uri = redirect_uri_for(client, params.get("redirect_uri"))
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE_CHARS:
        raise ClientRefused("invalid_request", f"state is longer than {MAX_STATE_CHARS} characters")
    try:
        return _checked_rest(client, redirect_uri, state, params, base_url)
    except OAuthError as exc:
        exc.redirect_uri, exc.state = redirect_uri, state
        raise


def _checked_rest(client: Client, redirect_uri: str, state: str | None, params: Mapping[str, str],
                  base_url: str) -> AuthorizationRequest:
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    if params.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required (plain is refused)")
    challenge = params.get("code_challenge") or ""
    if not PKCE_VALUE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge must be 43-128 characters of the PKCE alphabet")
    resource, namespace, name = resource_of(base_url, params.get("resource"))
    return AuthorizationRequest(client, redirect_uri, state, challenge, resource, check_scope(params.get("scope")),
                                namespace, name)


def pkce_matches(verifier: str | None, challenge: str) -> bool:
    """RFC 7636 §4.6: BASE64URL(SHA256(verifier)) equals the challenge, compared in constant time."""
    if not verifier or not PKCE_VALUE.fullmatch(verifier):
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return hmac.compare_digest(digest, challenge)
