""""Try it" on a hosted package: a signed-in user with access runs one tool from a form generated from its input
schema (web/pages/try_form.py) and sees the result, escaped like all package text. Each view and each run uses a fresh
sandbox through the gateway, with the same access rule, metering and audit as the MCP endpoint."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ...errors import DomainError, InvalidInput
from ..access import allow, browser_session
from ..auth import caller
from ..errors import status_for
from ..forms import read_form
from ..keys import SERVICES
from ..util import client_ip
from .render import render
from .try_form import PREFIX, arguments_from, fields_of

routes = web.RouteTableDef()
MAX_TOOLS = 100


class _ArgumentFields:
    """The form's argument fields may hold several lines (JSON, longer text); the rest are one line."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.startswith(PREFIX)

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


async def _tools(request: web.Request) -> list[dict[str, Any]]:
    m = request.match_info
    answer = await request.app[SERVICES].gateway.list_tools(caller(request), m["namespace"], m["name"],
                                                            client_ip(request))
    tools = (answer.get("result") or {}).get("tools") if "error" not in answer else None
    if not isinstance(tools, list):
        raise InvalidInput("the server did not list its tools", code="tools_unavailable")
    return [t for t in tools[:MAX_TOOLS] if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _shown(result: dict[str, Any]) -> list[dict[str, str]]:
    """The result's content as blocks of text: text items as they are, anything else as JSON."""
    blocks = []
    for item in result.get("content") or []:
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            blocks.append({"kind": "text", "text": item["text"][:100_000]})
        else:
            blocks.append({"kind": "json", "text": json.dumps(item, indent=2)[:100_000]})
    return blocks


async def _page(request: web.Request, tools: list[dict], tool_name: str | None, status: int = 200,
                **values: Any) -> web.Response:
    tool = next((t for t in tools if t["name"] == tool_name), tools[0] if tools else None)
    m = request.match_info
    return await render(request, "catalog/try.html", status=status, ref=f"{m['namespace']}/{m['name']}",
                        namespace=m["namespace"], name=m["name"], tools=tools, tool=tool,
                        fields=fields_of(tool.get("inputSchema")) if tool else [], **{"values": {}, **values})


@routes.get("/packages/{namespace}/{name}/try")
@allow(browser_session("invoke"))
async def try_page(request: web.Request) -> web.Response:
    return await _page(request, await _tools(request), request.query.get("tool"))


@routes.post("/packages/{namespace}/{name}/try")
@allow(browser_session("invoke"))
async def try_run(request: web.Request) -> web.Response:
    form = await read_form(request, multiline=_ArgumentFields())
    tools, tool_name = await _tools(request), str(form.get("tool", ""))
    tool = next((t for t in tools if t["name"] == tool_name), None)
    if tool is None:
        raise InvalidInput("this package has no such tool", code="invalid_tool")
    values = {k: str(v) for k, v in form.items() if k.startswith(PREFIX)}
    try:
        arguments = arguments_from(fields_of(tool.get("inputSchema")), form)
    except DomainError as exc:
        return await _page(request, tools, tool_name, status_for(exc), error=exc.message, values=values)
    m = request.match_info
    answer = await request.app[SERVICES].gateway.invoke(caller(request), m["namespace"], m["name"], tool_name,
                                                         arguments, client_ip(request))
    if "error" in answer:
        rpc = answer["error"] if isinstance(answer["error"], dict) else {}
        return await _page(request, tools, tool_name, 502, values=values,
                           error=f"The server failed: {str(rpc.get('message', 'no answer'))[:500]}")
    result = answer.get("result") if isinstance(answer.get("result"), dict) else {}
    return await _page(request, tools, tool_name, values=values, ran=True, blocks=_shown(result),
                       is_error=bool(result.get("isError")))
