"""Semantic versions (semver.org 2.0.0): parsing, ordering and a sortable text key for SQL.

Claude Desktop refuses manifests whose version is not semver, so the registry accepts nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from ..errors import InvalidInput

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
MAX_LENGTH = 256
MAX_NUMBER = 10**15  # keeps the sort key fixed-width


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def _precedence(self) -> tuple:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: "Version") -> bool:
        return self._precedence() < other._precedence()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._precedence() == other._precedence()

    def __hash__(self) -> int:
        return hash(self._precedence())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")

    def sort_key(self) -> str:
        """A string whose byte order is semver precedence (build metadata ignored).

        Fields are separated, and pre-release identifiers ended, by ',', which sorts before every character an
        identifier may hold ('-' included): "alpha" then precedes "alpha-x" and "alpha.1", as semver orders
        them. (Keys written before migration 007 used '.', which sorts after '-'.)"""
        head = f"{self.major:016d},{self.minor:016d},{self.patch:016d}"
        if not self.prerelease:
            return head + "~"  # '~' sorts after '-' so a release follows its pre-releases
        parts = [f"0{int(p):016d}," if p.isdigit() else f"1{p}," for p in self.prerelease]
        return head + "-" + "".join(parts)


def parse(text: str) -> Version:
    if not isinstance(text, str) or len(text) > MAX_LENGTH or not (match := SEMVER.match(text)):
        raise InvalidInput(f"{str(text)[:80]!r} is not a semantic version (MAJOR.MINOR.PATCH)", code="invalid_version")
    major, minor, patch = (int(match.group(i)) for i in (1, 2, 3))
    if max(major, minor, patch) >= MAX_NUMBER:
        raise InvalidInput("version numbers must be below 10^15", code="invalid_version")
    prerelease = tuple(match.group(4).split(".")) if match.group(4) else ()
    return Version(major, minor, patch, prerelease, match.group(5) or "")


SORT_KEY = re.compile(r"\d{16},\d{16},\d{16}(~|-(?:(?:0\d{16}|1[0-9A-Za-z-]+),)+)")


def is_sort_key(text: object) -> bool:
    """Whether `text` has the form of `Version.sort_key()` (a version list cursor holds one)."""
    return isinstance(text, str) and len(text) <= 4 * MAX_LENGTH and SORT_KEY.fullmatch(text) is not None


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except InvalidInput:
        return False
    return True
