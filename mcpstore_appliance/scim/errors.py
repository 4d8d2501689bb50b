"""The one error SCIM answers with (RFC 7644 3.12): an HTTP status and, where the RFC names one, a scimType."""

from __future__ import annotations

from ..errors import DomainError

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(DomainError):
    code = "scim_error"

    def __init__(self, status: int, scim_type: str | None, message: str):
        super().__init__(message)
        self.status = status
        self.scim_type = scim_type

    def body(self) -> dict:
        body = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.message}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body
