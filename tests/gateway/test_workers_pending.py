"""A hosted check that outlives its publish, under `serve --workers 2`, when the worker running it dies: the
leader resumes it from the stored bundle (catalog/pending_checks.py: each row names the process running it) and
the version ends published, whichever worker died. Real supervisor, real bubblewrap."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.test_publish_check import slow_bundle
from tests.gateway.workers_appliance import START_SECONDS, Appliance, create_user_and_token, wait_until_reaped

CHECKING = {"MCPSTORE_HOSTED__PUBLISH_CHECK": "true", "MCPSTORE_HOSTED__PUBLISH_CHECK_SECONDS": "1",
            "MCPSTORE_HOSTED__PUBLISH_CHECK_PENDING_SECONDS": "60"}


def check_rows(data) -> list[tuple]:
    with sqlite3.connect(f"file:{data / 'mcpstore.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT h.runner, h.attempts, v.state FROM hosted_checks h"
                          " JOIN versions v ON v.id = h.version_id").fetchall()


def state_of(data, name: str) -> str:
    with sqlite3.connect(f"file:{data / 'mcpstore.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT v.state FROM versions v JOIN packages p ON p.id = v.package_id"
                          " WHERE p.name = ?", (name,)).fetchone()[0]


def publish_on(appliance: Appliance, worker: int, bundle: bytes) -> None:
    """Straight to that worker's socket: the check then runs in that worker."""
    answer = appliance.request("POST", "/api/packages", bundle, {"Content-Type": "application/octet-stream"},
                               via_worker=worker)
    assert answer.status == 201 and answer.json()["state"] == "pending", (answer.status, answer.body)


@pytest.fixture
def appliance(tmp_path):
    if reason := bubblewrap_missing():
        pytest.skip(reason)
    data = tmp_path / "data"
    appliance = Appliance(data, create_user_and_token(data, "alice"), CHECKING)
    try:
        yield appliance
    finally:
        assert appliance.stop() == 0, appliance.output


def settle(appliance: Appliance) -> None:
    """Until no check is pending (or the deadline)."""
    deadline = time.monotonic() + START_SECONDS
    while check_rows(appliance.data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert check_rows(appliance.data) == [] and state_of(appliance.data, "slow") == "published"


@pytest.mark.parametrize("dying", [1, 2], ids=["the leader itself, started again", "the other worker"])
def test_the_leader_resumes_the_check_of_a_worker_that_died(appliance, dying):
    pids = {worker.number: worker.pid for worker in appliance.workers().values()}
    publish_on(appliance, dying, slow_bundle("slow", "slow:3"))  # answers after 1 s, the check goes on
    [(runner, attempts, _)] = check_rows(appliance.data)
    victim = int(runner.split(":")[0])
    assert victim == pids[dying] and attempts == 1
    os.kill(victim, signal.SIGKILL)
    wait_until_reaped(victim)
    settle(appliance)
    assert "resuming the hosted check of alice/slow@1.0.0" in appliance.output


def test_a_live_worker_s_check_is_left_to_it(appliance):
    """The leader's periodic resume does not start a second copy of a check another worker is running."""
    pids = {worker.number: worker.pid for worker in appliance.workers().values()}
    publish_on(appliance, 2, slow_bundle("slow", "slow:12"))  # longer than the leader's 10 s between looks
    [(runner, _, _)] = check_rows(appliance.data)
    assert int(runner.split(":")[0]) == pids[2]
    settle(appliance)
    assert "resuming the hosted check" not in appliance.output
