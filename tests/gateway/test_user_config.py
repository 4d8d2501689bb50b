"""Each user's settings (user_config) for a hosted package: kept encrypted at rest, reaching only that user's
sandbox as environment variables, never shown back when sensitive; bad input refused and nothing changed."""

from __future__ import annotations

import sqlite3

from mcpstore_appliance.gateway.user_config import NONCE_BYTES
from tests.gateway.client import mcp_session
from tests.gateway.servers import hostile_bundle, publish_bundle

FIELDS = {
    "api_key": {"type": "string", "title": "API key", "description": "the key", "sensitive": True, "required": True},
    "region": {"type": "string", "title": "Region", "description": "where", "default": "eu"},
    "retries": {"type": "number", "title": "Retries", "description": "how often", "min": 0, "max": 5},
    "verbose": {"type": "boolean", "title": "Verbose", "description": "talk more"},
}
ENV = {"API_KEY": "${user_config.api_key}", "REGION": "${user_config.region}",
       "RETRIES": "${user_config.retries}", "VERBOSE": "${user_config.verbose}"}
URL = "/api/packages/alice/keyed/user-config"


async def keyed_app(hosted_app):
    app = await hosted_app()
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    await publish_bundle(app, alice, hostile_bundle("keyed", env=ENV, user_config=FIELDS))
    return app, alice, bob


async def call(app, method: str, path: str, token: str | None = None, **kwargs):
    """(status, JSON body or bytes, headers) as `token`'s caller."""
    status, data, response = await app.client.with_token(token).request(method, path, **kwargs)
    return status, data, response.headers


async def env_of(app, token: str, *names: str) -> list[str]:
    async with mcp_session(app.base_url, "alice/keyed", token) as session:
        return [(await session.call_tool("env", {"name": name})).content[0].text for name in names]


async def test_each_user_gets_their_own_values_in_the_sandbox(hosted_app):
    app, alice, bob = await keyed_app(hosted_app)
    status, kept, headers = await call(app, "PUT", URL, alice, json={"api_key": "alice-secret-1", "retries": 3,
                                                                     "verbose": True})
    assert status == 200, kept
    assert kept["options"]["api_key"] == {"type": "string", "required": True, "sensitive": True, "set": True}
    assert kept["options"]["retries"]["value"] == 3 and kept["options"]["region"]["set"] is False
    assert "no-store" in headers["Cache-Control"]
    assert (await call(app, "PUT", URL, bob, json={"api_key": "bob-secret-2"}))[0] == 200

    assert await env_of(app, alice, "API_KEY", "REGION", "RETRIES", "VERBOSE") == ["alice-secret-1", "eu", "3", "true"]
    # bob set no retries and it has no default: left literal, as the reference substitution does (mcpb §6)
    assert await env_of(app, bob, "API_KEY", "RETRIES") == ["bob-secret-2", "${user_config.retries}"]

    status, shown, _ = await call(app, "GET", URL, alice)
    assert status == 200 and shown["options"]["api_key"]["set"] and "alice-secret-1" not in str(shown)


async def test_values_are_sealed_at_rest_and_bound_to_their_user(hosted_app):
    app, alice, bob = await keyed_app(hosted_app)
    await call(app, "PUT", URL, alice, json={"api_key": "alice-secret-1"})
    await call(app, "PUT", URL, bob, json={"api_key": "bob-secret-2"})
    database = app.data_dir / "mcpstore.sqlite3"
    assert b"alice-secret-1" not in database.read_bytes()
    key = app.data_dir / "keys" / "user_config.key"
    assert key.stat().st_mode & 0o777 == 0o600

    # A row copied onto another user's row (someone with the database file but not the key) does not open.
    with sqlite3.connect(database) as conn:
        rows = dict(conn.execute("SELECT u.username, c.sealed FROM hosted_user_config c JOIN users u ON u.id = c.user_id"))
        assert len(rows["alice"]) > NONCE_BYTES
        conn.execute("UPDATE hosted_user_config SET sealed = ? WHERE user_id = (SELECT id FROM users"
                     " WHERE username = 'bob')", (rows["alice"],))
    status, answer, _ = await call(app, "GET", URL, bob)
    assert status == 409 and answer["error"]["code"] == "user_config_unreadable", answer
    assert "alice-secret-1" not in str(answer)
    status, answer, _ = await call(app, "POST", "/api/invoke/alice/keyed", bob, json={"tool": "env", "arguments": {"name": "API_KEY"}})
    assert status == 409 and "alice-secret-1" not in str(answer)


async def test_a_required_value_missing_is_a_clear_error(hosted_app):
    app, alice, _ = await keyed_app(hosted_app)
    status, answer, _ = await call(app, "POST", "/api/invoke/alice/keyed", alice,
                                   json={"tool": "echo", "arguments": {"text": "x"}})
    assert status in (400, 422) and "api_key" in answer["error"]["message"], answer


async def test_bad_settings_are_refused_and_change_nothing(hosted_app):
    app, alice, _ = await keyed_app(hosted_app)
    assert (await call(app, "PUT", URL, alice, json={"api_key": "kept"}))[0] == 200
    for body in ({"nope": "x"}, {"retries": "three"}, {"retries": 9}, {"verbose": "yes"}, {"api_key": 5},
                 {"api_key": "x" * 5000}, ["api_key"], {"retries": True}, {"api_key": "a\u0000b"}):
        status, answer, _ = await call(app, "PUT", URL, alice, json=body)
        assert status == 400, (body, status, answer)
        assert answer["error"]["code"] in ("invalid_user_config", "invalid_body", "control_character"), answer
    assert await env_of(app, alice, "API_KEY") == ["kept"]


async def test_settings_follow_the_package_rules(hosted_app):
    app, alice, bob = await keyed_app(hosted_app)
    assert (await call(app, "GET", URL))[0] == 401
    assert (await call(app, "GET", "/api/packages/alice/missing/user-config", alice))[0] == 404
    assert (await call(app, "DELETE", URL, alice))[0] == 404  # nothing kept yet
    await call(app, "PUT", URL, alice, json={"api_key": "kept"})
    assert (await call(app, "DELETE", URL, alice))[0] == 204
    assert (await call(app, "GET", URL, alice))[1]["options"]["api_key"]["set"] is False
    _, reader = await app.user("carol", scopes=("read",))
    assert (await call(app, "PUT", URL, reader, json={"api_key": "x"}))[0] == 403
