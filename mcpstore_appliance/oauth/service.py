"""OAuthService: registration, authorisation codes, the token endpoint, revocation, and who is behind an
access token. Codes and tokens are random, shown once and stored as sha256 hashes (accounts/credentials.py).

A grant is one user's consent for one client and one resource. Codes are single-use and short-lived;
refresh tokens rotate (each is used once). A code or refresh token presented a second time means it leaked,
so the whole grant is revoked: every token issued under it stops working (RFC 6749 §4.1.2, OAuth 2.1 §4.3.1).
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import audit
from ..accounts.credentials import secret_hash
from ..accounts.models import Principal
from ..accounts.ratelimit import RateLimiter
from ..audit import Actor
from ..errors import Unauthenticated
from .client_documents import ClientDocuments
from .clients import Client, Clients
from .errors import OAuthError
from .grants import Grants
from .requests import AuthorizationRequest, check_request, pkce_matches, resource_of

ACCESS_PREFIX = "mcpo_"  # told apart from API tokens (mcps_) by web/auth.py
REFRESH_PREFIX = "mcpr_"


def _invalid_grant(message: str) -> OAuthError:
    return OAuthError("invalid_grant", message)


class OAuthService:
    def __init__(self, db, users, settings, base_url: str):
        """`users`: accounts' Users (the principal behind a token); `settings`: OAuthSettings."""
        self.db = db
        self.users = users
        self.settings = settings
        self.base_url = base_url
        self.issuer = base_url  # RFC 8414: the metadata is at /.well-known/oauth-authorization-server
        self.clients = Clients(db, ClientDocuments(db, settings))
        self.grants = Grants(db, base_url)  # the user's view of their grants (web/pages/grants.py)
        self.registrations_by_ip = RateLimiter(settings.registrations_per_ip_per_hour, 3600.0)

    # -- registration and the authorisation endpoint ------------------------------------------------------

    async def register(self, body: Any, ip: str | None) -> dict[str, Any]:
        if ip:
            self.registrations_by_ip.check(ip, "client registrations from this address")
        return await self.clients.register(body)

    async def authorization_request(self, params: Mapping[str, str]) -> AuthorizationRequest:
        client = await self.clients.get(params.get("client_id"))
        return check_request(client, params, self.base_url)

    async def issue_code(self, principal: Principal, request: AuthorizationRequest, ip: str | None = None) -> str:
        """The user approved: a new grant and its code (the caller has checked the user's access)."""
        code = secrets.token_urlsafe(32)
        now = time.time()
        async with self.db.write() as tx:
            await self._purge(tx, now)
            grant_id = await tx.insert("oauth_grants", {
                "client_id": request.client.client_id, "user_id": principal.id, "resource": request.resource,
                "scope": request.scope, "created_at": now})
            await tx.insert("oauth_codes", {
                "code_hash": secret_hash(code), "grant_id": grant_id, "redirect_uri": request.redirect_uri,
                "code_challenge": request.code_challenge, "expires_at": now + self.settings.code_seconds})
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), "oauth.grant",
                               target=request.client.client_id,
                               details={"client_name": request.client.client_name, "resource": request.resource,
                                        "scope": request.scope})
        return code

    @staticmethod
    async def _purge(tx, now: float) -> None:
        """Codes and tokens long expired are of no use to anyone; a day's grace keeps a late replay detectable."""
        await tx.execute("DELETE FROM oauth_codes WHERE expires_at < ?", (now - 86400,))
        await tx.execute("DELETE FROM oauth_tokens WHERE expires_at < ?", (now - 86400,))

    # -- the token endpoint ---------------------------------------------------------------------------------

    async def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return await self._exchange_code(form)
        if grant_type == "refresh_token":
            return await self._refresh(form)
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    async def _exchange_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        return await self._redeem(
            "SELECT c.*, g.client_id, g.resource, g.scope, g.revoked_at FROM oauth_codes c"
            " JOIN oauth_grants g ON g.id = c.grant_id WHERE c.code_hash = ?", "oauth_codes", "code_hash",
            form.get("code") or "", "authorisation code", lambda row, now: self._code_problem(row, form, now))

    def _code_problem(self, row: Mapping[str, Any], form: Mapping[str, str], now: float) -> OAuthError | None:
        if row["expires_at"] < now:
            return _invalid_grant("the authorisation code has expired")
        if row["revoked_at"] is not None:
            return _invalid_grant("this grant was revoked")
        if form.get("client_id") != row["client_id"]:
            return _invalid_grant("the code was issued to another client")
        if form.get("redirect_uri") != row["redirect_uri"]:
            return _invalid_grant("redirect_uri differs from the one of the authorisation request")
        if not pkce_matches(form.get("code_verifier"), row["code_challenge"]):
            return _invalid_grant("code_verifier does not match the code_challenge (PKCE S256)")
        return self._resource_problem(form, row["resource"])

    def _resource_problem(self, form: Mapping[str, str], granted: str) -> OAuthError | None:
        """RFC 8707: a `resource` sent to the token endpoint must be the one the grant was made for."""
        asked = form.get("resource")
        if asked is None:
            return None
        try:
            resource = resource_of(self.base_url, asked)[0]
        except OAuthError as exc:
            return exc
        return None if resource == granted else OAuthError("invalid_target", "this grant is for another resource")

    async def _refresh(self, form: Mapping[str, str]) -> dict[str, Any]:
        return await self._redeem(
            "SELECT t.*, g.client_id, g.resource, g.scope, g.revoked_at FROM oauth_tokens t"
            " JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = ? AND t.kind = 'refresh'",
            "oauth_tokens", "token_hash", form.get("refresh_token") or "", "refresh token",
            lambda row, now: self._refresh_problem(row, form, now))

    def _refresh_problem(self, row: Mapping[str, Any], form: Mapping[str, str], now: float) -> OAuthError | None:
        if row["revoked_at"] is not None or row["expires_at"] < now:
            return _invalid_grant("the refresh token has expired or was revoked")
        if form.get("client_id") != row["client_id"]:
            return _invalid_grant("the refresh token was issued to another client")
        return self._resource_problem(form, row["resource"])

    async def _redeem(self, sql: str, table: str, key: str, secret: str, what: str,
                      problem_of: Callable[[Mapping[str, Any], float], OAuthError | None]) -> dict[str, Any]:
        """Use a code or refresh token once: new tokens if `problem_of` finds nothing wrong. It is used up
        whatever the outcome (a failed attempt, such as a wrong verifier, burns it too), and a second use
        revokes its grant. `table` and `key` are this module's constants, never input."""
        now, problem, answer = time.time(), None, None
        async with self.db.write() as tx:
            row = await tx.fetch_one(sql, (secret_hash(secret),))
            if row is None:
                raise _invalid_grant(f"unknown {what}")
            if not await tx.changes(f"UPDATE {table} SET used_at = ? WHERE {key} = ? AND used_at IS NULL",
                                    (now, row[key])):
                await self._revoke_grant(tx, row["grant_id"], now)
                problem = _invalid_grant(f"this {what} was already used; the tokens issued with it are revoked")
            else:
                problem = problem_of(row, now)
            if problem is None:
                answer = await self._issue(tx, row["grant_id"], row["scope"], now)
        if problem is not None:
            raise problem
        return answer

    async def _issue(self, tx, grant_id: int, scope: str, now: float) -> dict[str, Any]:
        access, refresh = ACCESS_PREFIX + secrets.token_urlsafe(32), REFRESH_PREFIX + secrets.token_urlsafe(32)
        lifetime = self.settings.access_token_minutes * 60
        await tx.execute("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", (now, grant_id))
        await tx.execute_many(
            "INSERT INTO oauth_tokens (token_hash, grant_id, kind, expires_at) VALUES (?, ?, ?, ?)",
            [(secret_hash(access), grant_id, "access", now + lifetime),
             (secret_hash(refresh), grant_id, "refresh", now + self.settings.refresh_token_days * 86400)])
        return {"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scope,
                "refresh_token": refresh}

    @staticmethod
    async def _revoke_grant(tx, grant_id: int, now: float) -> None:
        await tx.execute("UPDATE oauth_grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (now, grant_id))

    async def revoke(self, form: Mapping[str, str]) -> None:
        """RFC 7009: revoking an access or refresh token revokes its grant. Unknown tokens are not an error
        (the answer must not tell a guesser anything); a token of another client is left alone."""
        token = form.get("token") or ""
        row = await self.db.fetch_one(
            "SELECT t.grant_id, g.client_id FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id"
            " WHERE t.token_hash = ?", (secret_hash(token),))
        if row is not None and hmac.compare_digest(str(form.get("client_id") or ""), row["client_id"]):
            async with self.db.write() as tx:
                await self._revoke_grant(tx, row["grant_id"], time.time())

    # -- the resource server's side -------------------------------------------------------------------------

    async def principal_for_access_token(self, secret: str) -> Principal:
        """Who is behind an access token: the user, with the grant's scopes, bound to its resource (audience),
        which the front door checks against the route (web/access.py)."""
        if len(secret) > 200:
            raise Unauthenticated("malformed access token", code="invalid_token")
        row = await self.db.fetch_one(
            "SELECT t.token_hash, t.expires_at, t.grant_id, g.user_id, g.scope, g.resource, g.revoked_at,"
            " g.last_used_at, u.is_disabled"
            " FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id JOIN users u ON u.id = g.user_id"
            " WHERE t.token_hash = ? AND t.kind = 'access'", (secret_hash(secret),))
        if row is None:
            raise Unauthenticated("unknown access token", code="invalid_token")
        if row["revoked_at"] is not None:
            raise Unauthenticated("this access token was revoked", code="token_revoked")
        if row["expires_at"] < time.time():
            raise Unauthenticated("this access token has expired", code="token_expired")
        if row["is_disabled"]:
            raise Unauthenticated("this account is disabled", code="account_disabled")
        principal = await self.users.principal_for_user(row["user_id"], frozenset(row["scope"].split()), None,
                                                        "oauth", row["expires_at"])
        await self.grants.touch(row["grant_id"], row["last_used_at"])
        return dataclasses.replace(principal, audience=row["resource"])

    # -- metadata -------------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorisation server metadata."""
        base = self.base_url
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "registration_endpoint": f"{base}/oauth/register",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "scopes_supported": ["invoke"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": True,
        }


__all__ = ["ACCESS_PREFIX", "Client", "OAuthService"]
