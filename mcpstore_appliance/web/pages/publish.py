"""Publisher dashboard: my packages, the upload form and its result, versions with yank / deprecate, stats."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...accounts.models import ROLES_THAT_PUBLISH
from ...catalog.publish_options import PublishOptions
from ...catalog.pricing import CURRENCY_DECIMALS, PRICING_MODELS, TIERS
from ...errors import DomainError, InvalidInput
from ..forms import read_form, read_publish_form  # the same streamed multipart reading as the API
from ..errors import status_for
from .chart import bar_chart
from ..access import allow, browser_session
from ..auth import caller
from .render import redirect, render
from .accounts import form_error
from .catalog import discovery
from ..util import client_ip
from ..keys import NO_STORE, SERVICES, SETTINGS

routes = web.RouteTableDef()

VISIBILITIES = ("public", "org", "private")
STATUS_ACTIONS = ("yank", "unyank", "deprecate")
NOTICES = {
    "yank": "The version was yanked. It no longer counts as latest but stays downloadable by exact version.",
    "unyank": "The yank was undone.",
    "deprecate": "The version is marked deprecated.",
}
STATS_DAYS = 30


async def publish_namespaces(request: web.Request, principal) -> list[tuple[str, str]]:
    """(namespace, label) pairs the user may publish to: their own and orgs where their role publishes."""
    orgs = await request.app[SERVICES].accounts.orgs_of(principal)
    return [(principal.user.username, f"{principal.user.username} (you)")] + [
        (org.slug, f"{org.name} ({org.slug})") for org, role in orgs if role in ROLES_THAT_PUBLISH]


# ---- the dashboard ----------------------------------------------------------------------------------------

@routes.get("/dashboard")
@allow(browser_session("publish"))
async def dashboard(request: web.Request) -> web.Response:
    principal = caller(request)
    packages = await request.app[SERVICES].package_status.managed_packages(principal)
    groups = [{"namespace": namespace, "label": label,
               "packages": [p for p in packages if p["namespace"] == namespace]}
              for namespace, label in await publish_namespaces(request, principal)]
    return await render(request, "publish/dashboard.html", groups=groups)


# ---- upload -------------------------------------------------------------------------------------------------

async def _upload_form(request: web.Request, principal, status: int = 200, **values: Any) -> web.Response:
    return await render(request, "publish/upload.html", status=status,
                        namespaces=await publish_namespaces(request, principal), pricing_models=PRICING_MODELS,
                        currencies=tuple(CURRENCY_DECIMALS), tiers=TIERS, visibilities=VISIBILITIES,
                        max_bytes=request.app[SETTINGS].publish.max_bundle_bytes,
                        **{"form": {}, **values})


@routes.get("/dashboard/publish")
@allow(browser_session("publish"))
async def upload_page(request: web.Request) -> web.Response:
    principal = caller(request)
    return await _upload_form(request, principal)


@routes.post("/dashboard/publish")
@allow(browser_session("publish"))
async def upload(request: web.Request) -> web.Response:
    principal = caller(request)
    options: dict[str, str] = {}
    try:
        if not request.content_type.startswith("multipart/"):
            raise InvalidInput("send the upload form as multipart/form-data with a .mcpb file", code="not_multipart")
        chunks = await read_publish_form(request, options)
        result = await request.app[SERVICES].publisher.publish(
            principal, PublishOptions.parse(options), chunks, ip=client_ip(request))
    except DomainError as exc:
        return await _upload_form(request, principal, status_for(exc), form=options, **form_error(exc))
    request[NO_STORE] = True
    return await render(request, "publish/result.html", status=201, result=result.to_dict())


# ---- one package: versions, status changes, stats -------------------------------------------------------

async def _manage_page(request: web.Request, status: int = 200, **values: Any) -> web.Response:
    principal = caller(request)
    m = request.match_info
    view = discovery(request)
    versions = view.packages.versions(principal, m["namespace"], m["name"], limit=100)
    package_id, downloads = view.packages.package_ref(principal, m["namespace"], m["name"])
    series = await view.downloads.daily(package_id, STATS_DAYS)
    return await render(request, "publish/package.html", status=status, namespace=m["namespace"], name=m["name"],
                        versions=versions["versions"], total_versions=versions["total"], downloads=downloads,
                        chart=bar_chart(series), days=STATS_DAYS,
                        notice=NOTICES.get(request.query.get("done", "")),
                        **{"action_error": None, "action_version": None, **values})


@routes.get("/dashboard/packages/{namespace}/{name}")
@allow(browser_session("publish"))
async def manage_package(request: web.Request) -> web.Response:
    return await _manage_page(request)


@routes.post("/dashboard/packages/{namespace}/{name}/versions/{version}/{action}")
@allow(browser_session("publish"))
async def change_status(request: web.Request) -> web.Response:
    principal = caller(request)
    m = request.match_info
    action = m["action"]
    if action not in STATUS_ACTIONS:
        raise web.HTTPNotFound()
    form = await read_form(request, multiline={"reason"})
    reason = str(form.get("reason", ""))[:2000] or None
    try:
        await getattr(request.app[SERVICES].package_status, action)(
            principal, m["namespace"], m["name"], m["version"], reason, ip=client_ip(request))
    except DomainError as exc:
        return await _manage_page(request, status_for(exc), action_error=exc.message, action_version=m["version"])
    raise redirect(f"/dashboard/packages/{m['namespace']}/{m['name']}", done=action)
