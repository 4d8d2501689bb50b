"""Domain errors. Services raise these; the web layer maps each kind to an HTTP status.

Every error carries a stable machine `code`, a human `message` and optional `details`
(for example a list of validation problems with their JSON paths).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details


class InvalidInput(DomainError):
    code = "invalid_input"


class UnsupportedMediaType(InvalidInput):
    """A body in a format this endpoint does not read (415)."""

    code = "unsupported_media_type"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class TooLarge(DomainError):
    code = "too_large"


class Unprocessable(DomainError):
    """Well-formed input that breaks a rule (a bad manifest, a rejected bundle)."""

    code = "unprocessable"


class PaymentRequired(DomainError):
    """Access that needs a purchase, or credits that do not cover a call (402)."""

    code = "payment_required"


class UpstreamFailed(DomainError):
    """A peer we depend on (a payment provider) failed or answered nonsense (502)."""

    code = "upstream_failed"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(RateLimited):
    """The service cannot take this request now (503, with Retry-After)."""

    code = "unavailable"
