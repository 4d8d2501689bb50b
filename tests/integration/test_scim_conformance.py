"""SCIM conformance: scim2-tester (the python-scim project's RFC 7643/7644 checker) runs every check it has
against a real appliance on a real port, through an org's SCIM token, and none may fail."""

from __future__ import annotations

import asyncio

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILED = (Status.ERROR, Status.CRITICAL)


def run_checks(base_url: str, token: str):
    with httpx2.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        return check_server(SyncSCIMClient(http))


async def test_scim2_tester_finds_no_failure(appliance):
    _, owner_token = await appliance.user("owner")
    owner = appliance.client.with_token(owner_token)
    assert (await owner.post("/api/orgs", json={"slug": "acme"}))[0] == 201
    token = (await owner.post("/api/orgs/acme/scim-tokens", json={"name": "tester"}))[1]["token"]
    # the checker is synchronous: it runs in a thread while this loop serves the appliance
    results = await asyncio.to_thread(run_checks, f"{appliance.base_url}/scim/v2/acme", token)
    failures = [f"{r.title}: {r.reason}" for r in results if r.status in FAILED]
    skipped = [f"{r.title}: {r.reason}" for r in results if r.status == Status.SKIPPED]
    counts = {status.name: sum(r.status == status for r in results) for status in Status}
    print(f"scim2-tester: {len(results)} checks, {counts}")  # in the run's output (pytest -s), for the record
    assert len(results) > 20  # the checks ran, not a stub of them
    assert failures == [], "\n".join(failures)
    assert len(failures) == 0
    assert skipped == [], "\n".join(skipped)
