"""Version ranges of an allow rule, in the npm style IT teams already write: `*`, `1.2.3`, `>=1.2.0 <2.0.0`,
`^1.2.0`, `~1.2.0`, alternatives joined by `||`.

A range is checked when the policy is saved (so a typo is a 400, not a silent "nothing allowed") and kept as
its text, which is what devices and renderers see. Pre-releases match only comparators that name a pre-release
of the same MAJOR.MINOR.PATCH, as npm does: `^1.2.0` does not let `1.3.0-beta` in by accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..catalog.semver import Version, parse
from ..errors import InvalidInput

MAX_RANGE_LENGTH = 200
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?(.+)$")
_TESTS: dict[str, Callable[[Version, Version], bool]] = {
    ">=": lambda v, b: v >= b, "<=": lambda v, b: v <= b, ">": lambda v, b: v > b, "<": lambda v, b: v < b,
    "=": lambda v, b: v == b,
}

Comparator = tuple[str, Version]


def _bump(version: Version, op: str) -> Version:
    """The exclusive upper bound of a caret or tilde comparator: the next release that changes the left-most
    number that op keeps (`~1.2.3` < 1.3.0, `^1.2.3` < 2.0.0, `^0.2.3` < 0.3.0, `^0.0.3` < 0.0.4)."""
    major, minor, patch = version.major, version.minor, version.patch
    if op == "~" or (major == 0 and minor > 0):
        return Version(major, minor + 1, 0, ("0",))
    if major == 0:
        return Version(0, 0, patch + 1, ("0",))
    return Version(major + 1, 0, 0, ("0",))


def _comparators(part: str) -> list[Comparator]:
    if not part.strip():  # "1.2.3 ||" would otherwise mean "anything": a typo must not open the door
        raise InvalidInput("an empty alternative around '||'")
    found: list[Comparator] = []
    for token in part.split():
        if token == "*":
            continue
        match = _COMPARATOR.match(token)
        op, version = (match.group(1) or "="), parse(match.group(2))
        if op in ("^", "~"):
            found += [(">=", version), ("<", _bump(version, op))]
        else:
            found.append((op, version))
    return found


def parse_range(text: str) -> list[list[Comparator]]:
    """The alternatives of a range, each a list of comparators that must all hold."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_RANGE_LENGTH:
        raise InvalidInput(f"a version range is 1 to {MAX_RANGE_LENGTH} characters", code="invalid_range")
    try:
        return [_comparators(part) for part in text.split("||")]
    except InvalidInput as exc:
        raise InvalidInput(f"version range {text[:80]!r}: {exc.message}", code="invalid_range") from None


def check_range(text: str) -> str:
    parse_range(text)
    return text.strip()


def _holds(version: Version, comparators: list[Comparator]) -> bool:
    if not all(_TESTS[op](version, bound) for op, bound in comparators):
        return False
    if not version.is_prerelease:
        return True
    # a pre-release needs a comparator naming a pre-release of its own release (the bumps' "-0" do not count)
    same = (version.major, version.minor, version.patch)
    return any(bound.is_prerelease and bound.prerelease != ("0",) and (bound.major, bound.minor, bound.patch) == same
               for _, bound in comparators)


def satisfies(version: str | Version, text: str) -> bool:
    parsed = parse(version) if isinstance(version, str) else version
    return any(_holds(parsed, alternative) for alternative in parse_range(text))
