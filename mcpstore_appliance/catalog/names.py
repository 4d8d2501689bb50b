"""The shapes of catalog names, shared by publishing, package views and the registry API."""

from __future__ import annotations

import re

# A namespace is a username or an org slug (the rule of accounts/users.py SLUG).
NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?")
# A package name is the manifest `name` (the rule of bundles/manifest_rules.py SLUG).
PACKAGE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


def is_package_ref(namespace: str, name: str) -> bool:
    return bool(NAMESPACE.fullmatch(namespace) and PACKAGE_NAME.fullmatch(name))
