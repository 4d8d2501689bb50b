"""Secrets: key-looking strings in any file's content (secret_rules.py), and files that usually hold secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

from ..model import Finding
from ..secret_rules import find_secrets
from .registry import bundle_scanner, content_scanner
from .run import BundleView


@content_scanner("secrets")
def secrets_in_content(path: str, window: bytes) -> Iterable[Finding]:
    return find_secrets(path, window)


ENV_OK_SUFFIXES = (".example", ".sample", ".template", ".dist", ".defaults", ".schema")
CREDENTIAL_FILES = {".npmrc": "npm config (may hold auth tokens)", ".pypirc": "PyPI credentials",
                    ".netrc": "netrc credentials", ".git-credentials": "git credentials",
                    ".htpasswd": "password file"}
KEY_FILES = re.compile(r"^id_(rsa|dsa|ecdsa|ed25519)$|\.(p12|pfx|jks|keystore)$")


@bundle_scanner("secrets.files")
def secret_files(view: BundleView) -> Iterator[Finding]:
    for path in view.files:
        name = PurePosixPath(path).name
        if (name == ".env" or name.startswith(".env.")) and not name.endswith(ENV_OK_SUFFIXES):
            yield Finding("secrets.env_file", "high", path, "environment file (usually holds secrets)")
        elif name in CREDENTIAL_FILES:
            yield Finding("secrets.credentials_file", "high", path, CREDENTIAL_FILES[name])
        elif KEY_FILES.search(name):
            yield Finding("secrets.key_file", "high", path, "private key or key store file")
        elif path.endswith("/.aws/credentials") or path == ".aws/credentials":
            yield Finding("secrets.credentials_file", "critical", path, "AWS credentials file")
    if any(p == ".git" or p.startswith(".git/") for p in view.dirs):
        yield Finding("secrets.vcs_metadata", "low", ".git/", "git metadata is bundled (history may hold secrets)")
