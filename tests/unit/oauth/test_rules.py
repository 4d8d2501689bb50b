"""The pure rules of the authorisation server (oauth/): redirect URIs, resources, PKCE, scopes."""

from __future__ import annotations

import base64
import hashlib

import pytest

from mcpstore_appliance.oauth.clients import check_redirect_uri, check_scope, registration
from mcpstore_appliance.oauth.errors import OAuthError
from mcpstore_appliance.oauth.requests import pkce_matches, resource_of

BASE = "https://store.example"


@pytest.mark.parametrize("uri", ["https://app.example/cb", "https://app.example:8443/cb?x=1",
                                 "http://127.0.0.1:33418/callback", "http://localhost/cb", "http://[::1]:9/cb",
                                 "http://127.5.6.7/cb"])
def test_allowed_redirect_uris(uri):
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize("uri", ["http://app.example/cb", "http://localhost.evil.example/cb",
                                 "http://127.0.0.1.evil.example/cb", "https://app.example/cb#x",
                                 "https://a@app.example/cb", "https:///cb", "ftp://app.example/cb",
                                 "javascript:alert(1)", "data:text/html,x", "https://app.example/c b",
                                 "https://app.example/\u0000", "", 5, None])
def test_refused_redirect_uris(uri):
    with pytest.raises(OAuthError) as refused:
        check_redirect_uri(uri)
    assert refused.value.error == "invalid_redirect_uri"


def test_registration_defaults_and_dedup():
    metadata = registration({"redirect_uris": ["https://a.example/cb", "https://a.example/cb"], "extra": {"x": 1}})
    assert metadata["redirect_uris"] == ["https://a.example/cb"] and "extra" not in metadata
    assert metadata["client_name"] == "an unnamed application" and metadata["token_endpoint_auth_method"] == "none"


@pytest.mark.parametrize("resource, expected", [
    (f"{BASE}/mcp/alice/echo", f"{BASE}/mcp/alice/echo"),
    (f"{BASE}/mcp/alice/echo/", f"{BASE}/mcp/alice/echo"),
    ("HTTPS://STORE.EXAMPLE/mcp/alice/echo", f"{BASE}/mcp/alice/echo"),
])
def test_resources_of_hosted_endpoints(resource, expected):
    assert resource_of(BASE, resource) == (expected, "alice", "echo")


@pytest.mark.parametrize("resource", [None, "", f"{BASE}/mcp/alice", f"{BASE}/mcp/alice/echo/x",
                                      f"{BASE}/api/packages", "https://evil.example/mcp/alice/echo",
                                      f"{BASE}:444/mcp/alice/echo", f"{BASE}/mcp/alice/echo?x=1",
                                      f"{BASE}/mcp/alice/echo#f", f"{BASE}/mcp/../mcp/alice/echo",
                                      f"{BASE}/mcp/alice/%2e%2e"])
def test_other_resources_are_invalid_targets(resource):
    with pytest.raises(OAuthError) as refused:
        resource_of(BASE, resource)
    assert refused.value.error == "invalid_target"


def test_resources_below_a_base_path():
    assert resource_of(f"{BASE}/store", f"{BASE}/store/mcp/a/b") == (f"{BASE}/store/mcp/a/b", "a", "b")
    with pytest.raises(OAuthError):
        resource_of(f"{BASE}/store", f"{BASE}/mcp/a/b")


def test_pkce_s256():
    verifier = "A" * 20 + "-._~" + "z" * 30
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert pkce_matches(verifier, challenge)
    assert not pkce_matches(verifier + "x", challenge)
    assert not pkce_matches(challenge, challenge)  # plain: the challenge itself is not a verifier of itself
    assert not pkce_matches("short", challenge) and not pkce_matches(None, challenge)
    assert not pkce_matches("ü" * 50, challenge)


def test_scopes():
    assert check_scope(None) == "invoke" and check_scope("invoke invoke") == "invoke"
    for bad in ("admin", "invoke read", 5):
        with pytest.raises(OAuthError) as refused:
            check_scope(bad)
        assert refused.value.error == "invalid_scope"
