"""The OpenAPI 3.1 document at /api/openapi.json, built from the routes themselves.

Each JSON handler is decorated with `@documented(...)`; the document lists every decorated route, so it
grows with the API. A test checks that every route under /api, /v0.1 and /ledger is documented.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .. import __version__
from .access import NO_CREDENTIALS, access_of, allow
from .errors import REGISTRY_PREFIXES
from .keys import SERVICES

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}

# What /v0.1 and /v0 answer on errors (web/errors.py): the MCP Registry's own shape.
REGISTRY_ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}

PATH_PARAM = re.compile(r"\{([^}:]+)(?::(?:[^{}]|\{[^}]*\})*)?\}")  # a pattern may hold {m,n}


def documented(
    summary: str,
    *,
    tags: list[str] | None = None,
    query: dict[str, dict] | None = None,
    body: dict | None = None,
    body_content_type: str = "application/json",
    responses: dict[int, str] | None = None,
    response_schema: dict | None = None,
):
    """Attach OpenAPI facts to a handler. `query` maps parameter names to JSON schemas (add
    "description"/"required" keys as needed). Who may call it comes from its @allow declaration."""

    def mark(handler):
        handler.__openapi__ = {
            "summary": summary,
            "tags": tags or [],
            "query": query or {},
            "body": body,
            "body_content_type": body_content_type,
            "responses": responses or {200: "OK"},
            "response_schema": response_schema,
        }
        return handler

    return mark


def _operation(doc: dict[str, Any], path: str, auth: str | None) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(path)
    ]
    for name, schema in doc["query"].items():
        schema = dict(schema)
        description = schema.pop("description", None)
        required = schema.pop("required", False)
        param = {"name": name, "in": "query", "required": required, "schema": schema}
        if description:
            param["description"] = description
        parameters.append(param)
    operation: dict[str, Any] = {"summary": doc["summary"], "tags": doc["tags"], "parameters": parameters}
    if doc["body"] is not None:
        operation["requestBody"] = {"required": True, "content": {doc["body_content_type"]: {"schema": doc["body"]}}}
    responses: dict[str, Any] = {}
    error = "RegistryError" if path.startswith(REGISTRY_PREFIXES) else "Error"
    for status, description in doc["responses"].items():
        if status >= 400:
            content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}}
        elif doc["response_schema"] is not None:
            content = {"application/json": {"schema": doc["response_schema"]}}
        else:
            content = None
        responses[str(status)] = {"description": description, **({"content": content} if content else {})}
    # Any route may also refuse a request for reasons of its own kind (credentials, text, size, rate): always in
    # the error shape.
    responses["default"] = {"description": "An error",
                            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}}}
    operation["responses"] = responses
    if auth == "optional":
        operation["security"] = [{}, {"bearerToken": []}, {"sessionCookie": []}]
    elif auth is not None:
        operation["security"] = [{"bearerToken": [] if auth == "any" else [auth]}, {"sessionCookie": []}]
    return operation


def build_document(app: web.Application, base_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        doc = getattr(route.handler, "__openapi__", None)
        if doc is None or route.method == "HEAD":
            continue
        template = PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", route.resource.canonical)
        auth = (access_of(route.handler) or NO_CREDENTIALS).openapi_auth()
        paths.setdefault(template, {})[route.method.lower()] = _operation(doc, route.resource.canonical, auth)
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcpstore appliance API", "version": __version__},
        "servers": [{"url": base_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, "RegistryError": REGISTRY_ERROR_SCHEMA},
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer", "description": "API token (mcps_…)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "mcpstore_session"},
            },
        },
    }


def undocumented_routes(app: web.Application, prefixes: tuple[str, ...]) -> list[str]:
    missing = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "OPTIONS") or not canonical.startswith(prefixes):
            continue
        if getattr(route.handler, "__openapi__", None) is None:
            missing.append(f"{route.method} {canonical}")
    return missing


routes = web.RouteTableDef()


@routes.get("/api/openapi.json")
@allow(NO_CREDENTIALS)
@documented("This OpenAPI 3.1 document", tags=["meta"])
async def openapi_document(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.json_response(build_document(request.app, services.settings.base_url))
