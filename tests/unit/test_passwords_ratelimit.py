import pytest

from mcpstore_appliance.accounts.passwords import hash_password, password_problem, verify_password
from mcpstore_appliance.accounts.ratelimit import RateLimiter
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
