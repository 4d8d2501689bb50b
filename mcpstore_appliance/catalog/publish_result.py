"""What a publish comes to: the state the inspection report decides (published, quarantined or rejected), the
refusal that lists a rejected bundle's findings, and the result returned to the publisher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..bundles.model import BundleReport
from ..errors import InvalidInput, Unprocessable
from . import semver
from .names import PACKAGE_NAME
from .pricing import Pricing

STORED_SIGNATURE_STATUSES = ("unsigned", "signed", "self-signed")


@dataclass
class PublishResult:
    version_id: int
    package_id: int
    namespace: str
    name: str
    version: str
    state: str
    sha256: str
    size: int
    report: BundleReport
    pricing: Pricing
    visibility: str
    category: str | None
    package_created: bool
    is_latest: bool
    ledger_index: int | None = None
    ledger: dict[str, Any] | None = None  # the inclusion proof, filled in after the commit
    icon_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        report = self.report.to_dict()
        signature = report["signature"]
        return {
            "id": self.version_id, "package_id": self.package_id,
            "namespace": self.namespace, "name": self.name, "version": self.version, "state": self.state,
            "sha256": self.sha256, "digest": f"sha256:{self.sha256}", "size": self.size,
            "unsigned_sha256": self.report.unsigned_sha256,
            "manifest_version": self.report.metadata.manifest_version,
            "display_name": self.report.metadata.display_name,
            "signature": {"status": signature["status"], "subject": signature["subject"],
                          "issuer": signature["issuer"], "not_before": signature["not_before"],
                          "not_after": signature["not_after"], "fingerprint": signature["fingerprint_sha256"],
                          "digest_variant": signature["digest_variant"], "signing_time": signature["signing_time"],
                          "reason": signature["reason"]},
            "findings": report["findings"],
            "scanner_errors": report["scanner_errors"],
            "pricing": self.pricing.to_dict(), "visibility": self.visibility, "category": self.category,
            "package_created": self.package_created, "is_latest": self.is_latest,
            "icon_sha256": self.icon_sha256,
            "ledger": self.ledger,
            **self.extra,
        }


def decide(report: BundleReport, require_signature: bool) -> str:
    """published, quarantined or rejected. Fail closed: anything unexpected never publishes."""
    if report.outcome == "rejected" or report.signature.status not in STORED_SIGNATURE_STATUSES:
        return "rejected"
    if require_signature and report.signature.status == "unsigned":
        return "rejected"
    if report.outcome == "published" and not report.scanner_errors:
        return "published"
    return "quarantined"  # a scanner error, a finding that needs review, or an outcome we do not know


def rejection(report: BundleReport) -> Unprocessable:
    problems = [{"path": f.file, "check_id": f.check_id, "severity": f.severity, "message": f.message}
                for f in report.findings]
    if report.signature.status == "invalid":
        problems.append({"path": "", "check_id": "signature.invalid", "severity": "critical",
                         "message": f"invalid signature: {report.signature.reason or 'verification failed'}"})
    if not problems:
        problems.append({"path": "", "check_id": "policy", "severity": "high",
                         "message": "the bundle does not meet this registry's publishing policy"})
    summary = "; ".join(p["message"] for p in problems[:3])
    return Unprocessable(f"bundle rejected: {summary[:500]}", code="bundle_rejected", details=problems)


def check_name_and_version(name: str, version: str) -> semver.Version:
    """Inspection enforces both rules; checked again here because the catalog's keys depend on them."""
    if not isinstance(name, str) or not PACKAGE_NAME.fullmatch(name):
        raise Unprocessable("manifest name must be a lowercase slug (a-z, 0-9, '-', '_', '.'; at most 64)",
                            code="invalid_manifest", details=[{"path": "/name", "message": "not a lowercase slug"}])
    try:
        return semver.parse(version)
    except InvalidInput as exc:
        raise Unprocessable(exc.message, code="invalid_manifest",
                            details=[{"path": "/version", "message": exc.message}]) from None
