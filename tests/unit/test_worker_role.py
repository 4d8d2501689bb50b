"""How many workers `serve` runs, and how a worker learns which one it is (cli/supervisor.py, worker_role.py)."""

from __future__ import annotations

import os

import pytest

from mcpstore_appliance.cli.client import CliError
from mcpstore_appliance.cli.supervisor import worker_count
from mcpstore_appliance.config import ConfigError, load_settings
from mcpstore_appliance.worker_role import ENVIRONMENT, WorkerRole


def test_the_setting_takes_a_number_or_auto_from_the_file_or_the_environment(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server]\nworkers = "auto"\n')
    assert load_settings(config, environ={}).server.workers == "auto"
    assert load_settings(config, environ={"MCPSTORE_SERVER__WORKERS": "3"}).server.workers == 3
    assert load_settings(None, environ={}).server.workers == 1
    for wrong in ("0", "65", "many"):
        with pytest.raises(ConfigError, match="server.workers"):
            load_settings(None, environ={"MCPSTORE_SERVER__WORKERS": wrong})


def test_worker_count_is_one_per_usable_core_for_auto_and_refuses_nonsense():
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    assert worker_count("2") == 2 and worker_count(3) == 3
    for wrong in ("0", "65", "two", "-1"):
        with pytest.raises(CliError, match="--workers"):
            worker_count(wrong)


def test_a_worker_reads_its_role_from_the_environment_the_supervisor_sets(monkeypatch, tmp_path):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    single = WorkerRole.from_environment()
    assert (single.index, single.count, single.leader) == (0, 1, True)
    leader = WorkerRole(0, 2)
    monkeypatch.setenv(ENVIRONMENT, leader.environment())
    assert WorkerRole.from_environment() == leader and leader.leader
    second = WorkerRole(1, 2)
    assert not second.leader and second.name == "worker 2 of 2"
    assert second.socket_path(tmp_path) == tmp_path / "run" / "worker-1.sock"


def test_the_role_variable_is_not_taken_for_a_setting():
    assert load_settings(None, environ={ENVIRONMENT: "1/2"}).server.workers == 1


def test_each_worker_takes_its_share_of_the_machine_wide_sandbox_limits():
    settings = load_settings(None, environ={}, hosted={"max_sessions": 33, "max_sessions_per_user": 4,
                                                       "warm_pool_memory_mb": 3000})
    assert WorkerRole().share_of_the_machine(settings) is settings
    shared = WorkerRole(1, 2).share_of_the_machine(settings).hosted
    assert (shared.max_sessions, shared.warm_pool_memory_mb, shared.max_sessions_per_user) == (16, 1500, 4)
    assert settings.hosted.max_sessions == 33  # the original is left alone
    tiny = load_settings(None, environ={}, hosted={"max_sessions": 1})
    assert WorkerRole(0, 4).share_of_the_machine(tiny).hosted.max_sessions == 1  # never none at all
