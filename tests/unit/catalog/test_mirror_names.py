"""The curated mirror's input rules (catalog/mirror.py, catalog/mirror_fetch.py), without HTTP."""

from __future__ import annotations

import pytest

from mcpstore_appliance.catalog.mirror import Release
from mcpstore_appliance.catalog.mirror_fetch import upstream_url
from mcpstore_appliance.errors import InvalidInput


@pytest.mark.parametrize("raw, normalized", [
    ("https://Registry.Example.com/", "https://registry.example.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),  # loopback and private: internal upstreams
    ("http://10.0.0.5/mcp/", "http://10.0.0.5/mcp"),
    ("HTTP://[::1]:9000", "http://[::1]:9000"),
])
def test_upstream_urls_normalized(raw, normalized):
    assert upstream_url(raw) == normalized


@pytest.mark.parametrize("raw, code", [
    ("ftp://example.com", "invalid_upstream"),
    ("example.com", "invalid_upstream"),
    ("https://example.com/?a=1", "invalid_upstream"),
    ("https://example.com/#x", "invalid_upstream"),
    ("https://u@example.com", "invalid_upstream"),
    ("https://example.com:99999", "invalid_upstream"),
    ("http://169.254.169.254", "upstream_address_refused"),
    ("http://[fd00:ec2::254]", "upstream_address_refused"),
    ("http://[::ffff:169.254.1.1]", "upstream_address_refused"),
    ("http://0.0.0.0", "upstream_address_refused"),
    ("http://224.0.0.1", "upstream_address_refused"),
    ("http://metadata.google.internal", "upstream_address_refused"),
    ("https://" + "a" * 2001, "invalid_upstream"),
])
def test_upstream_urls_refused(raw, code):
    with pytest.raises(InvalidInput) as caught:
        upstream_url(raw)
    assert caught.value.code == code


def test_release_parse():
    assert str(Release.parse("alice/weather@1.2.0-beta.1")) == "alice/weather@1.2.0-beta.1"
    for bad in ("alice/weather", "alice@1.0.0", "Alice/weather@1.0.0", "alice/weather@1.0", "/weather@1.0.0",
                "alice/we ather@1.0.0", None):
        with pytest.raises(InvalidInput):
            Release.parse(bad)
