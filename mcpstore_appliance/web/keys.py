"""The typed keys through which handlers reach what `create_app` put on the application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..accounts.models import Principal
from ..config import Settings
from ..oauth import OAuthService
from ..worker_role import WorkerRole
from .metrics import Metrics

if TYPE_CHECKING:  # app.py imports the web modules: the type only, for checkers
    from ..app import Services

SERVICES: web.AppKey[Services] = web.AppKey("services")  # set in the application's start-up
SETTINGS = web.AppKey("settings", Settings)
WORKER = web.AppKey("worker", WorkerRole)  # which worker process this is; the leader runs the once-per-appliance timers
METRICS = web.AppKey("metrics", Metrics)  # the one the front door counts into, also services.metrics
USAGE: web.AppKey[Any] = web.AppKey("usage")  # tokens.UsageTokens, set by web/api_usage.install_usage
OAUTH = web.AppKey("oauth", OAuthService)  # the authorisation server of /mcp/ (web/oauth_api.py installs it)

# What the front door and the pages keep on a request while it is handled.
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")  # the caller (None: anonymous)
REQUEST_ID = web.RequestKey("request_id", str)
CSRF_TOKEN = web.RequestKey("csrf_token", str)  # the session's
CSRF_PENDING = web.RequestKey("csrf_pending", str)  # a multipart form's token, checked by its handler
NEW_ANON_CSRF = web.RequestKey("new_anon_csrf", str)  # a double-submit token to set as a cookie
NO_STORE = web.RequestKey("no_store", bool)  # a personal page: no cache may keep it
ORG_VARIES = web.RequestKey("org_varies", bool)  # the answer depends on X-Mcpstore-Org (web/org_context.py)
DEVICE_ORG = web.RequestKey("device_org", object)  # the accounts.models.Org of a managed device's token
