"""What a publisher asks for with a bundle, checked before a byte of the body is read: the options of a publish
(from query parameters or form fields) and the namespace it goes to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InvalidInput
from ..text import check_text
from .pricing import Pricing, parse_pricing

OPTION_NAMES = ("namespace", "pricing", "amount", "currency", "tier", "endpoint", "visibility", "category",
                "changelog")
PRICING_OPTIONS = ("pricing", "amount", "currency", "tier", "endpoint")
VISIBILITIES = ("public", "org", "private")
CATEGORY = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
MAX_CHANGELOG = 20_000
MAX_OPTION = 2_048  # every option but the changelog


@dataclass(frozen=True)
class PublishOptions:
    namespace: str | None = None
    pricing: Pricing | None = None  # None: keep the package's pricing (the defaults for a new package)
    visibility: str | None = None  # None: keep; a new package gets public (personal) or org (organization)
    category: str | None = None
    changelog: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, str]) -> "PublishOptions":
        """From query parameters or form fields: strings, absent or empty meaning "not given"."""
        unknown = sorted(set(raw) - set(OPTION_NAMES))
        if unknown:
            raise InvalidInput(f"unknown publish option(s) {', '.join(unknown)[:200]}; known: {', '.join(OPTION_NAMES)}",
                               code="unknown_option", details={"options": unknown[:20]})
        values: dict[str, str | None] = {}
        for name in OPTION_NAMES:
            value = raw.get(name)
            limit = MAX_CHANGELOG if name == "changelog" else MAX_OPTION
            if value is not None and len(value) > limit:
                raise InvalidInput(f"{name} is limited to {limit} characters", code="option_too_long",
                                   details={"field": name})
            check_text(value or "", name, multiline=name == "changelog")
            values[name] = value if value not in (None, "") else None
        pricing = None
        if any(values[name] is not None for name in PRICING_OPTIONS):
            # Pricing options given together replace the package's pricing as a whole.
            pricing = parse_pricing(values["pricing"], values["amount"], values["currency"], values["tier"],
                                    values["endpoint"])
        visibility = values["visibility"]
        if visibility is not None and visibility not in VISIBILITIES:
            raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}", code="invalid_visibility",
                               details={"field": "visibility"})
        category = values["category"]
        if category is not None and not CATEGORY.fullmatch(category):
            raise InvalidInput("category must be 1-40 lowercase letters, digits or inner hyphens",
                               code="invalid_category", details={"field": "category"})
        return cls(values["namespace"], pricing, visibility, category, values["changelog"])


@dataclass(frozen=True)
class Target:
    """Where a publish goes: a namespace and who owns packages in it."""

    namespace: str
    org_id: int | None
    owner_user_id: int | None


def check_visibility(target: Target, visibility: str | None) -> None:
    if visibility == "org" and target.org_id is None:
        raise InvalidInput("visibility 'org' needs an organization namespace; a personal package is public or "
                           "private", code="invalid_visibility", details={"field": "visibility"})
