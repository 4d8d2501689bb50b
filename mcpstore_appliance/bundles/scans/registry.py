"""The list of scanners and the decorators that add to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..model import Finding

if TYPE_CHECKING:
    from .run import BundleView


@dataclass(frozen=True)
class Scanner:
    name: str
    kind: Literal["content", "bundle"]
    fn: Callable[..., Iterable[Finding]]


SCANNERS: list[Scanner] = []


def content_scanner(name: str):
    def register(fn: Callable[[str, bytes], Iterable[Finding]]):
        SCANNERS.append(Scanner(name, "content", fn))
        return fn
    return register


def bundle_scanner(name: str):
    def register(fn: Callable[["BundleView"], Iterable[Finding]]):
        SCANNERS.append(Scanner(name, "bundle", fn))
        return fn
    return register
