"""The user's side of the authorisation server: `/oauth/authorize` signs the user in through the appliance's
own login page (browser sessions only: an anonymous visitor is sent to /login and comes back), shows what the
application asks for, and on approval sends an authorisation code to the application's redirect URI.

The client and its redirect URI are checked before anything is redirected (an unknown client or an
unregistered redirect URI gets an error page here, never a redirect); every other problem goes back to the
redirect URI as `error=...`. The consent form is CSRF-protected (the session's token, web/auth.py) and every
value it carries is checked again when it is posted. A package the user cannot call is refused with the
reason on the page.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from ...errors import DomainError, InvalidInput
from ...oauth import OAuthError
from ...oauth.errors import ClientRefused
from ...oauth.requests import AuthorizationRequest
from ..access import allow, browser_session
from ..auth import caller
from ..cors import origin_of
from ..forms import read_form
from ..keys import OAUTH, SERVICES
from ..oauth_api import single_values
from ..util import client_ip
from .render import render

routes = web.RouteTableDef()
CONSENT = browser_session("invoke")


def redirect_to_client(redirect_uri: str, **params: str | None) -> web.HTTPSeeOther:
    """The redirect URI with the answer's parameters added to its own query (RFC 6749 §3.1.2)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v is not None]
    return web.HTTPSeeOther(urlunsplit(parts._replace(query=urlencode(query))))


def _error_redirect(exc: OAuthError) -> web.HTTPSeeOther:
    return redirect_to_client(exc.redirect_uri, error=exc.error, error_description=exc.description, state=exc.state)


async def _checked(request: web.Request, params) -> AuthorizationRequest:
    """The authorisation request, or the answer to a bad one (an error page, or a redirect with the error)."""
    try:
        return await request.app[OAUTH].authorization_request(single_values(params, "query"))
    except OAuthError as exc:
        if exc.redirect_uri is None or isinstance(exc, ClientRefused):
            raise InvalidInput(f"This authorisation request cannot be used: {exc.description}",
                               code=exc.error) from None
        raise _error_redirect(exc) from None


async def _refusal(request: web.Request, auth: AuthorizationRequest) -> str | None:
    """Why the signed-in user may not call the package (None: they may), in the gateway's own words."""
    try:
        await request.app[SERVICES].gateway.target(caller(request), auth.namespace, auth.name)
    except DomainError as exc:
        return exc.message
    return None


async def _consent_page(request: web.Request, auth: AuthorizationRequest, refusal: str | None) -> web.Response:
    response = await render(request, "oauth/consent.html", status=403 if refusal else 200, auth=auth,
                            fields=auth.form_fields(), refusal=refusal,
                            redirect_host=urlsplit(auth.redirect_uri).netloc)
    # The approval's answer redirects to the application: the page's CSP must let the form go there.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        f"base-uri 'none'; frame-ancestors 'none'; form-action 'self' {origin_of(auth.redirect_uri)}")
    return response


@routes.get("/oauth/authorize")
@allow(CONSENT)
async def authorize_page(request: web.Request) -> web.StreamResponse:
    auth = await _checked(request, request.query)
    return await _consent_page(request, auth, await _refusal(request, auth))


@routes.post("/oauth/authorize")
@allow(CONSENT)
async def authorize_decision(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    decision = form.get("decision")
    auth = await _checked(request, {k: v for k, v in form.items() if k not in ("csrf_token", "decision")})
    if decision != "approve":
        raise redirect_to_client(auth.redirect_uri, error="access_denied",
                                 error_description="the user did not approve the request", state=auth.state)
    refusal = await _refusal(request, auth)
    if refusal is not None:
        return await _consent_page(request, auth, refusal)
    oauth = request.app[OAUTH]
    code = await oauth.issue_code(caller(request), auth, client_ip(request))
    raise redirect_to_client(auth.redirect_uri, code=code, state=auth.state, iss=oauth.issuer)
