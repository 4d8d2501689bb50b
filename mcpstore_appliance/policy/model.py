"""An org's group policy as a value: what its members and managed devices may install and run.

Packages are named `namespace/name` (the catalog's names); a publisher is a namespace (a user or an org).
Every list is kept sorted and without duplicates, so that two policies that say the same are the same value,
with the same canonical JSON, the same ETag and the same signature.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ..catalog.semver import parse as parse_version
from ..errors import InvalidInput
from .ranges import check_range

NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?$")  # users' and orgs' slugs (accounts)
PACKAGE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?/[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
MAX_ENTRIES = 1000


def _package(value: str) -> str:
    if not PACKAGE.match(value):
        raise ValueError("a package is named 'namespace/name' in lower case")
    return value


def _publisher(value: str) -> str:
    if not NAMESPACE.match(value):
        raise ValueError("a publisher is a namespace: lower-case letters, digits and '-'")
    return value


def _range(value: str) -> str:
    try:
        return check_range(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


def _version(value: str) -> str:
    try:
        parse_version(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value


PackageName = Annotated[str, AfterValidator(_package)]
Publisher = Annotated[str, AfterValidator(_publisher)]
VersionRange = Annotated[str, AfterValidator(_range)]
ExactVersion = Annotated[str, AfterValidator(_version)]


class Policy(BaseModel):
    """The document an org admin edits (PUT /api/orgs/{org}/policy) and devices receive, signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # allowlist mode: only the packages in `allowed` (within their ranges) may be installed
    allow_only_listed: bool = False
    allowed: dict[PackageName, VersionRange] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    blocked_packages: list[PackageName] = Field(default_factory=list, max_length=MAX_ENTRIES)
    blocked_publishers: list[Publisher] = Field(default_factory=list, max_length=MAX_ENTRIES)
    auto_install: list[PackageName] = Field(default_factory=list, max_length=MAX_ENTRIES)
    minimum_versions: dict[PackageName, ExactVersion] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    require_signature: bool = False
    require_verified_publisher: bool = False
    allow_hosted_servers: bool = True  # servers this appliance runs (the gateway)
    allow_remote_servers: bool = True  # servers a publisher runs elsewhere (pro tier endpoints)
    allow_local_dev_servers: bool = True  # servers users add by hand on their own machine (Claude Desktop)

    @field_validator("blocked_packages", "blocked_publishers", "auto_install")
    @classmethod
    def _sorted(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @field_validator("allowed", "minimum_versions")
    @classmethod
    def _sorted_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return dict(sorted(value.items()))

    def document(self) -> dict:
        """The plain JSON value (what canonical JSON, the renderers and the API take)."""
        return self.model_dump(mode="json")


DEFAULT_POLICY = Policy()
