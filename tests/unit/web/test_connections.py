"""The connection caps' arithmetic (web/connections.py): what the per-address cap counts, who it spares, and
how far below the descriptor limit the total cap stays."""

from __future__ import annotations

import pytest

from mcpstore_appliance.config import ConfigError, load_settings
from mcpstore_appliance.web.connections import RESERVE_MIN, UNKNOWN_LIMIT_CAP, Limits, address_key, total_cap


@pytest.mark.parametrize("host, key", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"),  # same /64: one subscriber
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client of a dual-stack socket
    ("fe80::1%eth0", "fe80::/64"),
    ("", ""),
])
def test_the_per_address_cap_counts_ipv4_addresses_and_ipv6_64s(host, key):
    assert address_key(host) == key


@pytest.mark.parametrize("configured, descriptors, cap", [
    (0, 1024, 1024 - RESERVE_MIN),  # at least RESERVE_MIN kept
    (0, 20_000, 15_000),  # a quarter kept
    (0, 300, 150),  # never more than half kept
    (500, 20_000, 500),  # the operator's own choice, when the descriptors allow it
    (50_000, 20_000, 15_000),  # and not when they do not
    (0, None, UNKNOWN_LIMIT_CAP),
    (700, None, 700),
])
def test_the_total_cap_stays_below_the_descriptor_limit(configured, descriptors, cap):
    assert total_cap(configured, descriptors) == cap


def test_trusted_proxies_are_spared_the_per_address_cap():
    settings = load_settings(environ={}, server={"trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"]})
    limits = Limits.of(settings.server)
    assert not limits.capped("10.1.2.3") and not limits.capped("::ffff:10.1.2.3")
    assert not limits.capped("2001:db8::5")
    assert limits.capped("192.0.2.1") and limits.capped("2001:db9::1") and limits.capped("")
    assert Limits.of(load_settings(environ={}).server).capped("10.1.2.3")


def test_a_trusted_proxy_that_is_not_a_network_stops_the_start():
    with pytest.raises(ConfigError, match="'server.trusted_proxies'.*'10.0.0.300'"):
        load_settings(environ={}, server={"trusted_proxies": ["10.0.0.300"]})
