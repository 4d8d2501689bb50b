"""Account pages: sign up, log in, log out, the first-admin setup link, the account page with API tokens."""

from __future__ import annotations

import contextlib

from aiohttp import web

from ...accounts.models import SCOPE_DESCRIPTIONS, SCOPES
from ...errors import DomainError, RateLimited
from ..access import ANYONE, allow, browser_session, open_when_private
from ..auth import SESSION_COOKIE, caller, principal_of
from ..errors import status_for
from ..forms import read_form
from .render import redirect, render, safe_next
from ..util import client_ip
from ..keys import NO_STORE, SERVICES, SETTINGS

routes = web.RouteTableDef()

NOTICES = {
    "token_revoked": "The token was revoked. Programs using it can no longer sign in.",
    "org_created": "The organization was created. You are its owner.",
    "welcome": "Welcome! Your account is ready.",
}


def form_error(exc: DomainError) -> dict:
    """A service error shown above a form that is displayed again with the user's input."""
    details = exc.details if isinstance(exc.details, list) else None
    return {"error": exc.message, "error_details": details}


async def start_session(request: web.Request, user, location: str) -> web.HTTPSeeOther:
    session_id, _csrf = await request.app[SERVICES].accounts.start_session(user)
    response = redirect(location)
    settings = request.app[SETTINGS]
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Lax", path="/",
                        secure=settings.server.behind_tls,
                        max_age=settings.accounts.session_ttl_hours * 3600)
    return response


def login_page_values(request: web.Request) -> dict:
    """What the login page shows besides the password form: the site-wide SSO button, when there is one."""
    site = request.app[SETTINGS].sso.oidc
    return {"sso_site": site.label if site.issuer else None}


# ---- log in and out ----------------------------------------------------------------------------------

@routes.get("/login")
@allow(open_when_private(ANYONE))
async def login_page(request: web.Request) -> web.Response:
    if principal_of(request):
        raise redirect(safe_next(request.query.get("next"), "/dashboard"))
    # /login?org=acme (a link an org hands out): its SSO button, named after it, when it has SSO set up
    org = None
    if named := request.query.get("org", "")[:320]:
        with contextlib.suppress(DomainError):
            org = await request.app[SERVICES].oidc.org_for_login(named)
    return await render(request, "accounts/login.html", next=safe_next(request.query.get("next"), ""), login="",
                        sso_org=org.slug if org else "", sso_org_name=org.name if org else "",
                        **login_page_values(request))


@routes.post("/login")
@allow(open_when_private(ANYONE))
async def login_submit(request: web.Request) -> web.Response:
    form = await read_form(request, multiline={"password"})  # a password is never shown
    login, target = str(form.get("login", ""))[:320], safe_next(str(form.get("next", "")), "/dashboard")
    accounts = request.app[SERVICES].accounts
    try:
        user = await accounts.login(login, str(form.get("password", ""))[:1024], client_ip(request))
    except DomainError as exc:
        # An address whose org requires SSO: its SSO form is filled in with that org.
        sso_org = exc.details.get("org") if exc.code == "sso_required" else ""
        response = await render(request, "accounts/login.html", status=status_for(exc), next=target, login=login,
                                sso_org=sso_org, **login_page_values(request), **form_error(exc))
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    raise await start_session(request, user, target)


@routes.post("/logout")
@allow(open_when_private(ANYONE))
async def logout(request: web.Request) -> web.Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        await request.app[SERVICES].accounts.end_session(session_id)
    response = redirect("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# ---- sign up and the first admin ------------------------------------------------------------------

def _signup_values(form) -> dict:
    return {"email": str(form.get("email", ""))[:320], "username": str(form.get("username", ""))[:39],
            "display_name": str(form.get("display_name", ""))[:100]}


@routes.get("/signup")
@allow(open_when_private(ANYONE))
async def signup_page(request: web.Request) -> web.Response:
    mode = request.app[SETTINGS].accounts.signup
    return await render(request, "accounts/signup.html", mode=mode, values={},
                        invite_code=request.query.get("invite", "")[:100])


@routes.post("/signup")
@allow(open_when_private(ANYONE))
async def signup_submit(request: web.Request) -> web.Response:
    form = await read_form(request, multiline={"password"})  # a password is never shown
    values = _signup_values(form)
    invite = str(form.get("invite_code", ""))[:100] or None
    accounts = request.app[SERVICES].accounts
    try:
        user = await accounts.signup(values["email"], values["username"], str(form.get("password", ""))[:1024],
                                     display_name=values["display_name"], invite_code=invite, ip=client_ip(request))
    except DomainError as exc:
        return await render(request, "accounts/signup.html", status=status_for(exc), values=values,
                            mode=request.app[SETTINGS].accounts.signup, invite_code=invite or "", **form_error(exc))
    raise await start_session(request, user, "/account?done=welcome")


@routes.get("/setup")
@allow(open_when_private(ANYONE))
async def setup_page(request: web.Request) -> web.Response:
    request[NO_STORE] = True  # the page carries a one-time code
    return await render(request, "accounts/setup.html", code=request.query.get("code", "")[:100], values={})


@routes.post("/setup")
@allow(open_when_private(ANYONE))
async def setup_submit(request: web.Request) -> web.Response:
    request[NO_STORE] = True
    form = await read_form(request, multiline={"password"})  # a password is never shown
    values, code = _signup_values(form), str(form.get("code", ""))[:100]
    accounts = request.app[SERVICES].accounts
    try:
        user = await accounts.complete_setup(code, values["email"], values["username"],
                                             str(form.get("password", ""))[:1024], values["display_name"])
    except DomainError as exc:
        return await render(request, "accounts/setup.html", status=status_for(exc), code=code, values=values,
                            **form_error(exc))
    raise await start_session(request, user, "/admin?done=welcome")


# ---- the account page: tokens and organizations ------------------------------------------------------

async def _account_page(request: web.Request, status: int = 200, **values) -> web.Response:
    principal = caller(request)
    accounts = request.app[SERVICES].accounts
    tokens = await accounts.list_tokens(principal)
    orgs = await accounts.orgs_of(principal)
    notice = NOTICES.get(request.query.get("done", ""))
    return await render(request, "accounts/account.html", status=status, tokens=tokens, orgs=orgs,
                        all_scopes=[s for s in SCOPES if s != "admin" or principal.user.is_admin],
                        scope_descriptions=SCOPE_DESCRIPTIONS,
                        max_days=request.app[SETTINGS].accounts.token_max_days,
                        notice=notice, **{"new_token": None, "token_form": {}, "org_form": {}, **values})


@routes.get("/account")
@allow(browser_session("account"))
async def account(request: web.Request) -> web.Response:
    return await _account_page(request)


@routes.post("/account/tokens")
@allow(browser_session("account"))
async def create_token(request: web.Request) -> web.Response:
    principal = caller(request)
    form = await read_form(request)
    scopes = [str(s) for s in form.getall("scopes", [])][:5]
    token_form = {"name": str(form.get("name", ""))[:100], "scopes": scopes, "org": str(form.get("org", ""))[:39],
                  "expires_in_days": str(form.get("expires_in_days", ""))[:6]}
    try:
        days = int(token_form["expires_in_days"]) if token_form["expires_in_days"] else None
    except ValueError:
        days = -1  # the service explains the allowed range
    try:
        secret, info = await request.app[SERVICES].accounts.create_token(
            principal, token_form["name"], scopes, org_slug=token_form["org"] or None, expires_in_days=days,
            ip=client_ip(request))
    except DomainError as exc:
        return await _account_page(request, status_for(exc), token_form=token_form, token_error=exc.message)
    # The secret is in this response only: rendered, never stored, never redirected through a URL.
    request[NO_STORE] = True
    return await _account_page(request, 201, new_token={"secret": secret, "info": info})


@routes.post("/account/tokens/{token_id:\\d{1,18}}/revoke")
@allow(browser_session("account"))
async def revoke_token(request: web.Request) -> web.Response:
    principal = caller(request)
    await request.app[SERVICES].accounts.revoke_token(principal, int(request.match_info["token_id"]),
                                                        ip=client_ip(request))
    raise redirect("/account", done="token_revoked")


@routes.post("/account/orgs")
@allow(browser_session("account"))
async def create_org(request: web.Request) -> web.Response:
    principal = caller(request)
    form = await read_form(request)
    org_form = {"slug": str(form.get("slug", ""))[:39], "name": str(form.get("name", ""))[:100]}
    try:
        org = await request.app[SERVICES].accounts.create_org(principal, org_form["slug"], org_form["name"])
    except DomainError as exc:
        return await _account_page(request, status_for(exc), org_form=org_form, org_error=exc.message)
    raise redirect(f"/orgs/{org.slug}", done="org_created")
