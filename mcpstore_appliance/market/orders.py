"""Orders: what a buyer asked for, priced and split when made. Also the package facts a sale needs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..accounts.models import Principal
from ..catalog.pricing import check_currency, format_minor_units, to_minor_units
from ..catalog.visibility import visible_clause
from ..errors import Forbidden, InvalidInput, NotFound


@dataclass(frozen=True)
class Product:
    """A package as the market sees it."""

    id: int
    ref: str  # namespace/name
    pricing_model: str
    price: int  # minor units of currency
    currency: str | None
    tier: str
    visibility: str
    org_id: int | None
    owner_user_id: int | None
    major: int | None  # of the latest version

    @property
    def creator(self) -> str:
        return f"org:{self.org_id}" if self.org_id is not None else f"user:{self.owner_user_id}"

    def as_package(self) -> dict:
        return {"visibility": self.visibility, "org_id": self.org_id, "owner_user_id": self.owner_user_id}


async def product(db, principal: Principal | None, namespace: str, name: str) -> Product:
    """The package if the caller may see it (a hidden one is not found, like everywhere else)."""
    clause, params = visible_clause(principal)
    row = await db.fetch_one(
        "SELECT p.id, p.namespace, p.name, p.pricing_model, p.price_amount, p.currency, p.tier, p.visibility,"
        " p.org_id, p.owner_user_id, v.version FROM packages p LEFT JOIN versions v ON v.id = p.latest_version_id"
        f" WHERE p.namespace = ? AND p.name = ? AND {clause}", (namespace, name, *params))
    if row is None:
        raise NotFound("No such package (or not visible to you)", code="package_not_found")
    major = int(row["version"].split(".", 1)[0]) if row["version"] else None
    return Product(row["id"], f"{row['namespace']}/{row['name']}", row["pricing_model"], row["price_amount"],
                   row["currency"], row["tier"], row["visibility"], row["org_id"], row["owner_user_id"], major)


def creator_share_bp(settings, item: Product) -> int:
    """The split for a sale of `item` now: the org-internal share for an org's non-public package where the
    operator set one, else the tier's."""
    if item.org_id is not None and item.visibility != "public" and settings.org_internal_creator_share_bp is not None:
        return settings.org_internal_creator_share_bp
    return settings.pro_creator_share_bp if item.tier == "pro" else settings.hobbyist_creator_share_bp


def amount_of(value: object, currency: str, field: str = "amount") -> int:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} is a decimal string such as \"20.00\"", code="invalid_amount",
                           details={"field": field})
    minor = to_minor_units(value, check_currency(currency))
    if minor <= 0:
        raise InvalidInput(f"{field} must be above zero", code="invalid_amount", details={"field": field})
    return minor


def check_card_minimum(settings, amount: int, currency: str) -> None:
    """Refuse a card payment the fixed card fee would eat (reference payments.md §2.7)."""
    minimum = settings.card_minimum.get(currency)
    if minimum is None or amount >= to_minor_units(minimum, currency):
        return
    raise InvalidInput(
        f"card payments start at {minimum} {currency}: the card fee (about 0.30 plus 2.9 % a charge) would eat "
        f"a payment of {format_minor_units(amount, currency)} {currency}. Top up your credits with {minimum} "
        f"{currency} or more instead; per-call prices are then paid from the credits.",
        code="below_card_minimum", details={"minimum": minimum, "currency": currency})


async def buyer_scope(db, principal: Principal, org_slug: str | None, seats: list | None) -> tuple[int | None, str,
                                                                                                   list[int]]:
    """(org id, scope, seat user ids) of a purchase: for oneself, or by an org's owner or admin for the whole
    org or for named members."""
    if org_slug is None:
        if seats:
            raise InvalidInput("seats are bought for an org: give its slug in `org`", code="seats_need_org")
        return None, "user", []
    org = await db.fetch_one("SELECT id FROM orgs WHERE slug = ?", (str(org_slug)[:100],))
    if org is None or principal.role_in(org["id"]) not in ("owner", "admin"):
        raise Forbidden("only an owner or admin of the org buys for it", code="not_org_admin")
    if not seats:
        return org["id"], "org", []
    if not isinstance(seats, list) or len(seats) > 1000 or not all(isinstance(s, str) for s in seats):
        raise InvalidInput("seats is a list of member user names", code="invalid_seats")
    marks = ",".join("?" * len(seats))
    rows = await db.fetch_all(f"SELECT u.id, u.username FROM users u JOIN memberships m ON m.user_id = u.id"
                              f" WHERE m.org_id = ? AND u.username IN ({marks})", (org["id"], *seats))
    missing = sorted(set(seats) - {row["username"] for row in rows})
    if missing:
        raise InvalidInput("seats must be members of the org", code="invalid_seats", details={"not_members": missing})
    return org["id"], "seats", sorted(row["id"] for row in rows)


async def seat_count(db, org_id: int | None, scope: str, seats: list[int]) -> int:
    if scope == "seats":
        return len(seats)
    if scope == "org":
        return max(1, await db.fetch_value("SELECT count(*) FROM memberships WHERE org_id = ?", (org_id,), 1))
    return 1


async def create(tx, **values) -> dict:
    values = {**values, "seats": json.dumps(values.get("seats", [])), "created_at": time.time()}
    order_id = await tx.insert("market_orders", values)
    return await tx.fetch_one("SELECT * FROM market_orders WHERE id = ?", (order_id,))


def order_json(order: dict) -> dict:
    return {"id": order["id"], "kind": order["kind"], "status": order["status"], "provider": order["provider"],
            "amount": order["amount"], "amount_display": format_minor_units(order["amount"], order["currency"]),
            "currency": order["currency"], "package_id": order["package_id"], "major": order["major"],
            "scope": order["scope"], "pay_url": order["pay_url"], "bolt11": order["bolt11"],
            "created_at": order["created_at"], "paid_at": order["paid_at"], "expires_at": order["expires_at"]}
