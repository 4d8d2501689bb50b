import pytest

from mcpstore_appliance.accounts.passwords import hash_password, password_problem, verify_password
from mcpstore_appliance.accounts.ratelimit import FailureDelays, RateLimiter, address_key
from mcpstore_appliance.errors import RateLimited


def test_argon2id_hash_verifies_only_the_right_password():
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not verify_password(None, "anything at all")  # unknown account
    assert not verify_password("garbage", "anything at all")


def test_password_rules():
    assert password_problem("short") is not None
    assert password_problem("x" * 2000) is not None
    assert password_problem("long enough passphrase") is None


def test_rate_limiter_window_and_retry_after():
    now = [1000.0]
    limiter = RateLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("ip")
    with pytest.raises(RateLimited) as error:
        limiter.check("ip")
    assert error.value.retry_after == 60
    limiter.check("other-ip")  # keys are independent
    now[0] += 30
    with pytest.raises(RateLimited) as error:
        limiter.check("ip")
    assert error.value.retry_after == 30
    now[0] += 31
    limiter.check("ip")  # the window has moved on


def test_failure_delays_grow_for_the_guesser_and_reset_on_success():
    now = [1000.0]
    delays = FailureDelays(3, 60, clock=lambda: now[0])
    for _ in range(2):
        delays.check("k")
        delays.failed("k")
    delays.check("k")  # two failures are free
    waits = []
    for _ in range(8):
        delays.failed("k")
        with pytest.raises(RateLimited) as error:
            delays.check("k")
        waits.append(error.value.retry_after)
        with pytest.raises(RateLimited):  # refused attempts are not tried and do not lengthen the wait
            delays.check("k")
        now[0] += error.value.retry_after
        delays.check("k")
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    delays.check("other")  # keys are independent
    delays.failed("k")
    delays.succeeded("k")
    delays.check("k")  # a success forgets the failures
    delays.failed("k")
    delays.check("k")  # and counting starts again


def test_failure_delays_are_forgotten_after_a_quiet_hour():
    now = [0.0]
    delays = FailureDelays(1, 60, clock=lambda: now[0])
    for _ in range(5):
        now[0] += 61
        delays.failed("k")
    with pytest.raises(RateLimited) as error:
        delays.check("k")
    assert error.value.retry_after == 16
    now[0] += 3600
    delays.check("k")
    delays.failed("k")  # counted from the start again: the first failure closes for 1 s
    with pytest.raises(RateLimited) as error:
        delays.check("k")
    assert error.value.retry_after == 1


@pytest.mark.parametrize("address, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # another address of the same /64: the same key
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("unknown", "unknown"),
])
def test_address_key_groups_ipv6_by_64(address, key):
    assert address_key(address) == key
