"""OAuth errors carry the RFC 6749 error codes (`invalid_grant`, `invalid_request`, ...), which OAuth clients
read from the `error` member of the answer, so the web layer answers them in the RFC's shape."""

from __future__ import annotations


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        # Set on errors of an authorisation request whose client and redirect URI were checked: where the
        # error goes back to (RFC 6749 §4.1.2.1), with the request's state.
        self.redirect_uri: str | None = None
        self.state: str | None = None

    def as_json(self) -> dict:
        return {"error": self.error, "error_description": self.description}


class ClientRefused(OAuthError):
    """An authorisation request whose client or redirect URI cannot be trusted: shown to the user, never
    redirected (RFC 6749 §4.1.2.1), or the answer would be an open redirect."""
