"""Export formats of audit events (their JSON view, service.event_view): JSON Lines, CEF, and RFC 5424 syslog,
which `push_syslog` sends to a collector over TCP with octet-counting framing (RFC 6587 section 3.4.1).

CEF escaping: `|` and `\\` in the header; `\\`, `=` and line breaks in extension values. Syslog: facility 13
(log audit), severity informational for successes and warning for failures; the structured data carries the
AU-3 fields under the SD-ID `mcpstore@32473` (32473 is IANA's example enterprise number, RFC 5612).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from typing import Any

from .. import __version__
from ..canonical import canonical_json

FORMATS = ("jsonl", "cef", "syslog")
FACILITY_LOG_AUDIT = 13
SD_ID = "mcpstore@32473"
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def jsonl_line(event: dict[str, Any]) -> str:
    return canonical_json(event) + "\n"


def _cef_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def cef_line(event: dict[str, Any]) -> str:
    failed = event["outcome"]["result"] == "failure"
    extension = {
        "rt": event["ts"], "externalId": event["event_id"], "act": event["action"], "suser": event["actor"]["name"],
        "suid": event["actor"]["id"], "src": event["actor"]["ip"], "outcome": event["outcome"]["result"],
        "reason": event["outcome"]["reason"], "request": event["where"], "cs1Label": "org", "cs1": event["org"],
        "cs2Label": "target", "cs2": event["target"], "cs3Label": "hash", "cs3": event["hash"],
    }
    pairs = " ".join(f"{key}={_cef_value(value)}" for key, value in extension.items() if value is not None)
    header = "|".join(_cef_header(part) for part in (
        "CEF:0", "mcpstore", "mcpstore appliance", __version__, event["action"], event["action"], "6" if failed else "3"))
    return f"{header}|{pairs}\n"


def _sd_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(event: dict[str, Any], hostname: str, app_name: str = "mcpstore") -> str:
    """One RFC 5424 message (no framing)."""
    severity = 4 if event["outcome"]["result"] == "failure" else 6
    params = {"event_id": event["event_id"], "actor": event["actor"]["name"], "src": event["actor"]["ip"],
              "outcome": event["outcome"]["result"], "org": event["org"], "target": event["target"],
              "where": event["where"], "hash": event["hash"]}
    data = "".join(f' {key}="{_sd_value(value)}"' for key, value in params.items() if value is not None)
    msgid = _PRINTUSASCII.sub("_", event["action"])[:32] or "-"
    host = _PRINTUSASCII.sub("_", hostname)[:255] or "-"
    return (f"<{FACILITY_LOG_AUDIT * 8 + severity}>1 {event['ts']} {host} {app_name} - {msgid} [{SD_ID}{data}] "
            + canonical_json(event))


def octet_counted(message: str) -> bytes:
    data = message.encode("utf-8")
    return str(len(data)).encode() + b" " + data


def render(events: Iterable[dict[str, Any]], fmt: str, hostname: str) -> Iterable[str]:
    for event in events:
        if fmt == "jsonl":
            yield jsonl_line(event)
        elif fmt == "cef":
            yield cef_line(event)
        else:
            yield syslog_message(event, hostname) + "\n"


async def push_syslog(host: str, port: int, messages: Iterable[str], timeout: float) -> int:
    """Send messages to a syslog collector over TCP, octet-counted; returns how many were sent."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    sent = 0
    try:
        for message in messages:
            writer.write(octet_counted(message))
            sent += 1
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await asyncio.wait_for(writer.drain(), timeout)
        await asyncio.wait_for(writer.drain(), timeout)
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout)
        except (OSError, asyncio.TimeoutError):
            pass
    return sent
