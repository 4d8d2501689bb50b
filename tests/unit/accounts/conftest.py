"""The accounts services on a real SQLite file (`db`, tests/unit/conftest.py), no HTTP."""

from __future__ import annotations

import pytest

from mcpstore_appliance.accounts.service import AccountService
from mcpstore_appliance.config import AccountSettings
from mcpstore_appliance.db import Database

PASSWORD = "correct horse battery"


@pytest.fixture
def account_settings() -> AccountSettings:
    return AccountSettings()


@pytest.fixture
async def accounts(db, account_settings) -> AccountService:
    return AccountService(db, account_settings)


@pytest.fixture
def person(accounts):
    """person("alice", admin=False, password=None) -> (User, Principal as signed in with a session)."""

    async def make(username: str, *, admin: bool = False, password: str | None = None):
        user = await accounts.create_user(f"{username}@example.com", username, password, is_admin=admin)
        return user, await accounts.principal_for_user(user.id)

    return make


async def audit_actions(db: Database) -> list[str]:
    return [row["action"] for row in await db.fetch_all("SELECT action FROM audit_events ORDER BY id")]
