"""Patterns for credentials that must not ship inside a bundle.

Every rule starts with a literal anchor: one Aho-Corasick pass finds all anchors in every byte of every file
(binary or text), and only then the rule's regex runs at that spot, so scanning a large bundle costs one
multi-pattern pass rather than a regex walk over every position.

Severity is for a secret in the publisher's own files. Inside vendored third-party code (node_modules,
site-packages, lib/, venv/) it is lowered one step: libraries ship test keys, and the publisher's own
credential is the one that matters. Obvious placeholders (long runs of one character, "EXAMPLE") are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ahocorasick_rs import BytesAhoCorasick, MatchKind

from .model import SEVERITIES, Finding

MAX_SECRET_LENGTH = 512  # longest match any rule can make; windows overlap by this much
VENDORED = re.compile(r"(^|/)(node_modules|site-packages|dist-packages|vendor|venv|\.venv)/|^(server/)?lib/")


@dataclass(frozen=True)
class SecretRule:
    check_id: str
    label: str
    severity: str
    anchors: tuple[bytes, ...]
    pattern: re.Pattern[bytes]  # matched at the anchor position
    word_start: bool = True  # the anchor must not continue a longer word


def _rule(check_id: str, label: str, severity: str, anchors: tuple[bytes, ...], pattern: bytes,
          word_start: bool = True) -> SecretRule:
    return SecretRule(check_id, label, severity, anchors, re.compile(pattern), word_start)


_PEM_BODY = rb"(?:\s|\\r|\\n)*(?:Proc-Type:|[A-Za-z0-9+/]{40})"
RULES: tuple[SecretRule, ...] = (
    _rule("secrets.private_key", "private key", "critical", (b"-----BEGIN ",),
          rb"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP|SSH2) )?PRIVATE KEY(?: BLOCK)?-----" + _PEM_BODY,
          word_start=False),
    _rule("secrets.aws_access_key_id", "AWS access key id", "high", (b"AKIA", b"ASIA"),
          rb"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])"),
    _rule("secrets.aws_secret_access_key", "AWS secret access key", "critical",
          (b"aws_secret_access_key", b"AWS_SECRET_ACCESS_KEY", b"SecretAccessKey", b"secretAccessKey"),
          rb"[A-Za-z_]+[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    _rule("secrets.gcp_api_key", "Google API key", "high", (b"AIza",), rb"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"),
    _rule("secrets.stripe_live_key", "Stripe live secret key", "critical", (b"sk_live_", b"rk_live_"),
          rb"[sr]k_live_[0-9A-Za-z]{20,}"),
    _rule("secrets.stripe_test_key", "Stripe test secret key", "low", (b"sk_test_",), rb"sk_test_[0-9A-Za-z]{20,}"),
    _rule("secrets.stripe_webhook_secret", "Stripe webhook secret", "high", (b"whsec_",),
          rb"whsec_[0-9A-Za-z+/=]{24,}"),
    _rule("secrets.github_token", "GitHub token", "critical", (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"),
          rb"gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
    _rule("secrets.github_token", "GitHub fine-grained token", "critical", (b"github_pat_",),
          rb"github_pat_[A-Za-z0-9_]{60,}"),
    _rule("secrets.slack_token", "Slack token", "critical", (b"xoxb-", b"xoxa-", b"xoxp-", b"xoxr-", b"xoxs-",
                                                              b"xoxe-", b"xapp-"),
          rb"x(?:ox[abprse]|app)-[0-9A-Za-z-]{20,}"),
    _rule("secrets.slack_webhook", "Slack webhook URL", "high", (b"hooks.slack.com/services/",),
          rb"hooks\.slack\.com/services/T[0-9A-Za-z]+/B[0-9A-Za-z]+/[0-9A-Za-z]{16,}", word_start=False),
    _rule("secrets.anthropic_key", "Anthropic API key", "critical", (b"sk-ant-",),
          rb"sk-ant-(?:api|admin|oat)[0-9]{2}-[A-Za-z0-9_\-]{80,}"),
    _rule("secrets.openai_key", "OpenAI API key", "critical", (b"sk-",),
          rb"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{58,}|[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,})"),
    _rule("secrets.npm_token", "npm access token", "critical", (b"npm_",), rb"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
    _rule("secrets.npm_token", "npm auth token in .npmrc syntax", "high", (b"_authToken=",),
          rb"_authToken=(?!\$\{)[^\s\"']{16,}", word_start=False),
    _rule("secrets.pypi_token", "PyPI upload token", "critical", (b"pypi-AgEIcHlwaS5vcmc",),
          rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"),
    _rule("secrets.huggingface_token", "Hugging Face token", "high", (b"hf_",), rb"hf_[A-Za-z0-9]{34,}(?![A-Za-z0-9_])"),
)


def _placeholder(token: bytes) -> bool:
    tail = token[-24:]
    return b"EXAMPLE" in token.upper() or len(set(tail)) < 6


def lower(severity: str) -> str:
    return SEVERITIES[max(0, SEVERITIES.index(severity) - 1)]


def _redact(token: bytes) -> str:
    text = token.decode("latin-1")
    if text.startswith("-----BEGIN"):
        return text.split("-----")[1]
    return f"{text[:8]}… ({len(text)} characters)"


# Two automata over every anchor (the Rust aho-corasick crate). Only the leftmost-first one can use its SIMD
# prefilter; the overlapping one is much slower, so it only looks at the few bytes around each hit of the fast
# one, where anchors may overlap or share a start ("sk-"/"sk-ant-").
_ANCHORS = sorted({anchor for rule in RULES for anchor in rule.anchors})
_RULES_BY_ANCHOR = [[rule for rule in RULES if anchor in rule.anchors] for anchor in _ANCHORS]
_LONGEST_ANCHOR = max(map(len, _ANCHORS))
_FAST = BytesAhoCorasick(_ANCHORS, matchkind=MatchKind.LeftmostFirst)
_OVERLAPPING = BytesAhoCorasick(_ANCHORS)


def anchor_hits(window: bytes) -> list[tuple[int, int]]:
    """Every (anchor index, position) where an anchor occurs in `window`, overlapping ones included.

    The fast pass reports a hit at every position where no earlier hit's span covers it; any anchor it skipped
    starts inside some hit's span [start, end), so an overlapping search over each span (plus the longest
    anchor's reach) finds exactly the rest.
    """
    hits: set[tuple[int, int]] = set()
    for _, start, end in _FAST.find_matches_as_indexes(window):
        span = window[start:end + _LONGEST_ANCHOR - 1]
        hits.update((index, start + offset) for index, offset, _ in
                    _OVERLAPPING.find_matches_as_indexes(span, overlapping=True) if offset < end - start)
    return sorted(hits, key=lambda hit: (hit[1], hit[0]))


def find_secrets(path: str, window: bytes) -> Iterator[Finding]:
    vendored = bool(VENDORED.search(path))
    reported: set[int] = set()
    for anchor_index, pos in anchor_hits(window):
        for rule in _RULES_BY_ANCHOR[anchor_index]:
            if id(rule) in reported or (rule.word_start and pos and window[pos - 1:pos].isalnum()):
                continue
            match = rule.pattern.match(window, pos)
            if match and not _placeholder(match.group(0)):
                reported.add(id(rule))  # one finding per rule and window is enough
                severity = lower(rule.severity) if vendored else rule.severity
                where = " (in vendored third-party code)" if vendored else ""
                yield Finding(rule.check_id, severity, path, f"{rule.label} found{where}: {_redact(match.group(0))}")
