"""A signed-in user's settings (`user_config` values) for a hosted package: kept encrypted, passed to the
sandbox as environment variables, never shown back when sensitive (gateway/user_config.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import RootModel

from .access import allow, signed_in
from .auth import caller
from .keys import SERVICES
from .openapi import documented
from .util import read_json

routes = web.RouteTableDef()
PATH = "/api/packages/{namespace}/{name}/user-config"
# Your own settings for packages you may call: the invoke scope, any org binding (the package's rule decides).
OWN_SETTINGS = signed_in("invoke", org="allowed")
RESPONSES = {401: "credentials needed", 403: "not allowed", 404: "no such hosted package"}


class SettingsBody(RootModel[dict[str, Any]]):
    """Option name -> value (string, number, boolean, or a list for `multiple` options); null clears one."""


def _answer(described: dict) -> web.Response:
    return web.json_response({"options": described}, headers={"Cache-Control": "no-store"})


@routes.get(PATH)
@allow(OWN_SETTINGS)
@documented("Your settings for a hosted package: each option, whether it is set, and its value unless sensitive",
            tags=["hosted"], responses={200: "OK", **RESPONSES})
async def get_settings(request: web.Request) -> web.Response:
    gateway = request.app[SERVICES].gateway
    described = await gateway.settings_of(caller(request), **request.match_info)
    return _answer(described)


@routes.put(PATH)
@allow(OWN_SETTINGS)
@documented("Replace your settings for a hosted package (kept encrypted; sensitive values are never shown back)",
            tags=["hosted"], body=SettingsBody.model_json_schema(),
            responses={200: "What is kept", 400: "Unknown option or wrong type", **RESPONSES})
async def put_settings(request: web.Request) -> web.Response:
    body = await read_json(request, SettingsBody)
    gateway = request.app[SERVICES].gateway
    described = await gateway.keep_settings(caller(request), values=body.root, **request.match_info)
    return _answer(described)


@routes.delete(PATH)
@allow(OWN_SETTINGS)
@documented("Forget your settings for a hosted package", tags=["hosted"],
            responses={204: "Forgotten", **RESPONSES})
async def delete_settings(request: web.Request) -> web.Response:
    await request.app[SERVICES].gateway.forget_settings(caller(request), **request.match_info)
    return web.Response(status=204)
