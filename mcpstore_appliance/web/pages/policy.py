"""The policy editor of an org's owners and admins: the current policy as a form, a preview of what a draft
allows and refuses among the org's packages (and why), and saving it as a new version (audited by the
policy service). A browser-session form: the front door checks its CSRF token."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ...errors import DomainError, InvalidInput
from ...policy.model import Policy
from ...policy.preview import preview
from ..access import allow, browser_session
from ..auth import caller
from ..errors import status_for
from ..forms import read_form
from .render import redirect, render
from ..keys import SERVICES
from ..util import client_ip

routes = web.RouteTableDef()

FLAGS = {
    "allow_only_listed": "Only the packages listed as allowed may be installed",
    "require_signature": "Require bundles signed by their publisher",
    "require_verified_publisher": "Require verified publishers",
    "allow_hosted_servers": "Allow servers hosted by this registry",
    "allow_remote_servers": "Allow remote servers (run by their publishers)",
    "allow_local_dev_servers": "Allow servers users add by hand (Claude Desktop)",
}
LISTS = ("blocked_packages", "blocked_publishers", "auto_install")
MAPS = ("allowed", "minimum_versions")  # one "namespace/name value" per line
TEXT_FIELDS = LISTS + MAPS
MAX_LINES = 1000


def form_of(policy: Policy) -> dict[str, Any]:
    """The policy as the form shows it."""
    values: dict[str, Any] = {flag: getattr(policy, flag) for flag in FLAGS}
    values.update({name: "\n".join(getattr(policy, name)) for name in LISTS})
    values.update({name: "\n".join(f"{k} {v}" for k, v in getattr(policy, name).items()) for name in MAPS})
    return values


def draft_of(form) -> tuple[dict[str, Any], Policy]:
    """The submitted form as the values to show again and the Policy they state (400 with the problems)."""
    values: dict[str, Any] = {flag: form.get(flag) == "on" for flag in FLAGS}
    values.update({name: str(form.get(name, ""))[:100_000] for name in TEXT_FIELDS})
    document: dict[str, Any] = {flag: values[flag] for flag in FLAGS}
    for name in LISTS:
        document[name] = values[name].replace(",", " ").split()[:MAX_LINES + 1]
    for name in MAPS:
        pairs = [line.strip().split(None, 1) for line in values[name].splitlines() if line.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise InvalidInput(f"each line of {name.replace('_', ' ')} is 'namespace/name value'",
                               code="invalid_policy", details=[{"path": name, "message": "a line without a value"}])
        document[name] = {key: value.strip() for key, value in pairs}
    try:
        return values, Policy.model_validate(document)
    except ValidationError as exc:
        details = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()[:20]]
        raise InvalidInput("the policy has mistakes", code="invalid_policy", details=details) from None


async def _page(request: web.Request, status: int = 200, **values: Any) -> web.Response:
    policies = request.app[SERVICES].policy
    org = await policies.managed_org(caller(request), request.match_info["slug"])
    current = await policies.current(org)
    values.setdefault("form", form_of(current.policy))
    return await render(request, "orgs/policy.html", status=status, org=org, current=current, flags=FLAGS,
                        history=await policies.history(org, 10), **values)


@routes.get("/orgs/{slug}/policy")
@allow(browser_session("account"))
async def policy_page(request: web.Request) -> web.Response:
    notice = "The policy was saved as a new version." if request.query.get("done") == "saved" else None
    return await _page(request, notice=notice)


@routes.post("/orgs/{slug}/policy")
@allow(browser_session("account"))
async def policy_submit(request: web.Request) -> web.Response:
    """action=preview shows what the draft does; action=save stores it (expected_version guards overwrites)."""
    principal, slug = caller(request), request.match_info["slug"]
    policies = request.app[SERVICES].policy
    org = await policies.managed_org(principal, slug)  # only owners and admins see or preview anything
    form = await read_form(request, multiline=TEXT_FIELDS)
    try:
        values, draft = draft_of(form)
    except InvalidInput as exc:
        return await _page(request, 400, form={**form_of(Policy()), **_raw(form)}, error=exc.message,
                           error_details=exc.details)
    if form.get("action") == "save":
        expected = str(form.get("expected_version", ""))
        try:
            await policies.update(principal, slug, draft, ip=client_ip(request),
                                  expected_version=int(expected) if expected.isdigit() else None)
        except DomainError as exc:  # the policy moved on meanwhile: show the draft again with the problem
            return await _page(request, status_for(exc), form=values, error=exc.message)
        raise redirect(f"/orgs/{slug}/policy", done="saved")
    rows = await preview(request.app[SERVICES].db, principal, org, draft)
    return await _page(request, form=values, preview=rows)


def _raw(form) -> dict[str, Any]:
    return {name: str(form.get(name, ""))[:100_000] for name in TEXT_FIELDS} | \
        {flag: form.get(flag) == "on" for flag in FLAGS}
