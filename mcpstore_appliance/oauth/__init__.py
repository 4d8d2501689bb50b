"""The appliance as the OAuth 2.1 authorisation server of its hosted MCP endpoints (MCP 2025-11-25
`basic/authorization`): RFC 8414 metadata, RFC 7591 dynamic registration of public clients, the authorisation
code grant with PKCE S256 and the RFC 8707 `resource` bound into the token audience, rotating refresh tokens,
RFC 7009 revocation. No aiohttp here: web/oauth_api.py and web/pages/oauth.py speak HTTP."""

from .errors import OAuthError
from .service import OAuthService

__all__ = ["OAuthError", "OAuthService"]
