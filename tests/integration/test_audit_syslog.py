"""The audit log pushed as RFC 5424 syslog over TCP with octet-counting framing (RFC 6587) to a real receiver:
Debian's rsyslogd, started by the test with an imtcp input that writes each message's fields to a file."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.seed import make_org

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
pytestmark = pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd is not installed (Debian package rsyslog; .ci/run installs it)")

CONFIG = """
global(workDirectory="{work}")
module(load="imtcp")
template(name="fields" type="string"
         string="%PRI%|%TIMESTAMP:::date-rfc3339%|%HOSTNAME%|%APP-NAME%|%MSGID%|%STRUCTURED-DATA%|%msg%\\n")
ruleset(name="audit") {{ action(type="omfile" file="{out}" template="fields") }}
input(type="imtcp" port="{port}" ruleset="audit")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rsyslog(tmp_path):
    port, out = free_port(), tmp_path / "received.log"
    (tmp_path / "work").mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(CONFIG.format(work=tmp_path / "work", out=out, port=port))
    process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"rsyslogd exited: {process.stdout.read().decode(errors='replace')}")
                subprocess.run(["sleep", "0.1"])
        yield port, out
    finally:
        process.terminate()
        process.wait(10)


async def received(out: Path, count: int) -> list[str]:
    for _ in range(100):
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.1)
    return lines


async def test_events_reach_rsyslog_as_rfc5424_with_octet_counting(start_app, rsyslog):
    port, out = rsyslog
    app = await start_app(audit={"syslog_host": "127.0.0.1", "syslog_port": port})
    _, alice = await app.user("alice")
    await make_org(app, alice, "acme")
    await app.user("bob")
    await app.client.with_token(alice).put("/api/orgs/acme/members/bob", json={"role": "member"})
    status, body, _ = await app.client.with_token(alice).post("/api/orgs/acme/audit/push")
    assert status == 200, body
    lines = await received(out, body["sent"])
    assert len(lines) == body["sent"] >= 1
    pri, ts, host, app_name, msgid, sd, msg = lines[0].split("|", 6)
    assert pri == "110" and app_name == "mcpstore" and msgid == "org.create"  # facility 13 (log audit), info
    assert ts.endswith("Z") or "+00:00" in ts
    assert sd.startswith("[mcpstore@32473 ") and 'actor="alice"' in sd and 'outcome="success"' in sd
    event = json.loads(msg.strip())
    assert event["action"] == "org.create" and event["org"] == "acme"
    status, events, _ = await app.client.with_token(alice).get("/api/orgs/acme/audit/events",
                                                               params={"action": "audit.export"})
    assert events["events"][0]["details"]["format"] == "syslog"  # the push itself is audited
    assert events["events"][0]["details"]["events"] == body["sent"]


async def test_an_unreachable_collector_is_a_502_and_an_audited_failure(start_app):
    app = await start_app(audit={"syslog_host": "127.0.0.1", "syslog_port": free_port(), "syslog_timeout_seconds": 2})
    _, alice = await app.user("alice")
    await make_org(app, alice, "acme")
    status, body, _ = await app.client.with_token(alice).post("/api/orgs/acme/audit/push")
    assert status == 502 and body["error"]["code"] == "collector_unreachable"
    status, events, _ = await app.client.with_token(alice).get("/api/orgs/acme/audit/events",
                                                               params={"action": "audit.export", "outcome": "failure"})
    assert len(events["events"]) == 1
