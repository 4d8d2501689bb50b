"""Verifying the detached CMS SignedData of an .mcpb signature block (mcpb-format.md §7).

`mcpb verify` 2.1.2 never succeeds, so this is the verifier. asn1crypto parses the CMS, `cryptography` checks the
maths. Accepted: one SignerInfo; SHA-256/384/512; RSA PKCS#1 v1.5 (what `mcpb sign` makes), RSA-PSS, ECDSA and
Ed25519 (third-party signers); signed attributes with contentType = id-data and a messageDigest equal to the
digest of either the ZIP as stored ("prefix", mcpb 2.1.2) or the ZIP with its EOCD comment_length zeroed
("comment-zeroed", upstream main).

Status policy:
- `invalid`   anything wrong with the block or the maths (the bundle is rejected by the caller);
- `signed`    valid, the leaf certificate is currently valid and is pinned by fingerprint or chains (through the
              certificates in the blob) to a CA of the configured bundle, with code-signing usage if it lists EKUs;
- `self-signed` valid maths but nobody vouches for the signer: a self-issued certificate, or one from a CA this
              registry does not trust, or an expired one. `reason` says which. (The four statuses are fixed by
              the product; "integrity proven, identity not" is what self-signed means to a user.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from .model import SignatureInfo, SignatureTrust

HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
MAX_CHAIN = 8

# variant name -> digest bytes, for one hash algorithm
DigestSource = Callable[[str], dict[str, bytes]]


class SignatureError(Exception):
    """The signature block is present but does not verify."""


def normalize_fingerprint(value: str) -> str:
    return value.replace(":", "").replace(" ", "").strip().lower()


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def verify_cms(der: bytes, digests: DigestSource, trust: SignatureTrust,
               now: datetime | None = None) -> SignatureInfo:
    """Verify one DER blob. Never raises: problems come back as status `invalid` with a reason."""
    try:
        return _verify(der, digests, trust, now or datetime.now(timezone.utc))
    except SignatureError as exc:
        return SignatureInfo(status="invalid", reason=str(exc))
    except (ValueError, TypeError, KeyError, IndexError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        # asn1crypto raises these for malformed DER, cryptography InvalidVersion (not a ValueError) for a
        # certificate whose version is not 1-3; keep the message short and non-echoing.
        return SignatureInfo(status="invalid", reason=f"malformed CMS signature ({type(exc).__name__})")


def _verify(der: bytes, digests: DigestSource, trust: SignatureTrust, now: datetime) -> SignatureInfo:
    content_info = cms.ContentInfo.load(der, strict=True)
    if content_info["content_type"].native != "signed_data":
        raise SignatureError("the signature block is not a CMS SignedData")
    signed = content_info["content"]
    if signed["encap_content_info"]["content"].native is not None:
        raise SignatureError("the signature embeds content; a detached signature is expected")
    signer_infos = list(signed["signer_infos"])
    if len(signer_infos) != 1:
        raise SignatureError(f"expected one signer, found {len(signer_infos)}")
    signer = signer_infos[0]
    cert_set = signed["certificates"]
    certs = [c.chosen for c in cert_set if c.name == "certificate"] if cert_set.native is not None else []
    leaf_asn1 = _find_signer_cert(signer["sid"], certs)
    leaf = x509.load_der_x509_certificate(leaf_asn1.dump())
    others = [x509.load_der_x509_certificate(c.dump()) for c in certs if c is not leaf_asn1]

    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in HASHES:
        raise SignatureError(f"unsupported or weak digest algorithm {digest_name}")
    candidates = digests(digest_name)
    variant, signing_time = _check_signature(signer, leaf, digest_name, candidates)
    status, reason = _trust(leaf, others, trust, now)
    return SignatureInfo(
        status=status,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=fingerprint(leaf),
        digest_variant=variant,
        signing_time=signing_time,
        reason=reason,
    )


def _find_signer_cert(sid, certs):
    if not certs:
        raise SignatureError("the signature carries no certificate")
    if sid.name == "issuer_and_serial_number":
        wanted = sid.chosen
        for cert in certs:
            if cert.serial_number == wanted["serial_number"].native and cert.issuer == wanted["issuer"]:
                return cert
    elif sid.name == "subject_key_identifier":
        for cert in certs:
            if cert.key_identifier == sid.chosen.native:
                return cert
    raise SignatureError("no certificate in the signature matches the signer")


def _check_signature(signer, leaf: x509.Certificate, digest_name: str,
                     candidates: dict[str, bytes]) -> tuple[str, datetime | None]:
    """Verify the signer's signature; return (digest variant matched, signingTime)."""
    hash_cls = HASHES[digest_name]
    attrs = signer["signed_attrs"]
    signature = signer["signature"].native
    if attrs.native is None:  # no signed attributes: the signature is over the content digest itself
        for variant, digest in candidates.items():
            if _verify_raw(leaf, signer, signature, digest, hash_cls, prehashed=True):
                return variant, None
        raise SignatureError("the signature does not match the bundle contents")
    values = {}
    for attr in attrs:
        kind = attr["type"].native
        if kind in values:
            raise SignatureError(f"signed attribute {kind} appears twice")
        if len(attr["values"]) != 1:
            raise SignatureError(f"signed attribute {kind} must have exactly one value")
        values[kind] = attr["values"][0].native
    if values.get("content_type") != "data":
        raise SignatureError("the signed contentType attribute is not id-data")
    message_digest = values.get("message_digest")
    variant = next((name for name, digest in candidates.items() if digest == message_digest), None)
    if variant is None:
        raise SignatureError("the bundle's digest does not match the signed messageDigest (bytes were changed)")
    # The signature covers the DER of the attributes as a SET OF: re-tag [0] IMPLICIT (0xA0) to SET (0x31).
    encoded = attrs.dump()
    to_verify = b"\x31" + encoded[1:]
    if not _verify_raw(leaf, signer, signature, to_verify, hash_cls, prehashed=False):
        raise SignatureError("the signature over the signed attributes does not verify")
    signing_time = values.get("signing_time")
    return variant, signing_time


def _verify_raw(leaf, signer, signature: bytes, data: bytes, hash_cls, *, prehashed: bool) -> bool:
    key = leaf.public_key()
    algo = signer["signature_algorithm"]
    name = algo.signature_algo
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if prehashed:
                return False
            key.verify(signature, data)
            return True
        sig_hash = _signature_hash(algo, hash_cls)
        chosen: hashes.HashAlgorithm | Prehashed = Prehashed(sig_hash) if prehashed else sig_hash
        if isinstance(key, rsa.RSAPublicKey) and name == "rsassa_pkcs1v15":
            key.verify(signature, data, padding.PKCS1v15(), chosen)
        elif isinstance(key, rsa.RSAPublicKey) and name == "rsassa_pss":
            params = algo["parameters"]
            pss_hash = HASHES[params["hash_algorithm"]["algorithm"].native]()
            pss = padding.PSS(mgf=padding.MGF1(pss_hash), salt_length=params["salt_length"].native)
            key.verify(signature, data, pss, Prehashed(pss_hash) if prehashed else pss_hash)
        elif isinstance(key, ec.EllipticCurvePublicKey) and name == "ecdsa":
            key.verify(signature, data, ec.ECDSA(chosen))
        else:
            raise SignatureError(f"unsupported signature algorithm {name} for a {type(key).__name__}")
    except InvalidSignature:
        return False
    return True


def _signature_hash(algo, hash_cls) -> hashes.HashAlgorithm:
    try:
        name = algo.hash_algo  # e.g. sha256_rsa -> sha256
    except ValueError:  # plain rsaEncryption / ecPublicKey OIDs name no hash: the digestAlgorithm applies
        return hash_cls()
    if name not in HASHES:
        raise SignatureError(f"unsupported or weak signature hash {name}")
    return HASHES[name]()


# ---------------------------------------------------------------------------------------------- trust


def _trust(leaf: x509.Certificate, others: list[x509.Certificate], trust: SignatureTrust,
           now: datetime) -> tuple[str, str]:
    expired = _validity_problem(leaf, now)
    pins = {normalize_fingerprint(p) for p in trust.pinned_fingerprints}
    leaf_fp = fingerprint(leaf)
    if leaf_fp in pins:
        if expired:
            return "self-signed", f"pinned certificate, but {expired}"
        return "signed", "pinned certificate"
    if trust.ca_bundle_pem:
        anchors = x509.load_pem_x509_certificates(trust.ca_bundle_pem)
        chain_problem = _chain_problem(leaf, others, anchors, now)
        if chain_problem is None:
            return "signed", "chains to a trusted CA"
    else:
        chain_problem = "no CA bundle configured"
    if leaf.issuer == leaf.subject:
        return "self-signed", "self-signed certificate" + (f" ({expired})" if expired else "")
    return "self-signed", f"issuer not trusted: {chain_problem}"


def _validity_problem(cert: x509.Certificate, now: datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"certificate {cert.subject.rfc4514_string()} is not yet valid"
    if now > cert.not_valid_after_utc:
        return f"certificate {cert.subject.rfc4514_string()} expired"
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def _leaf_usage_problem(leaf: x509.Certificate) -> str | None:
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and not ({ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
                                & set(eku)):
        return "the signer certificate is not for code signing"
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not (usage.digital_signature or usage.content_commitment):
        return "the signer certificate may not make digital signatures"
    return None


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _chain_problem(leaf: x509.Certificate, others: list[x509.Certificate], anchors: list[x509.Certificate],
                   now: datetime) -> str | None:
    """None if leaf chains to an anchor (through `others`), else why not."""
    problem = _leaf_usage_problem(leaf) or _validity_problem(leaf, now)
    if problem:
        return problem
    anchor_ders = {a.public_bytes(Encoding.DER) for a in anchors}
    if leaf.public_bytes(Encoding.DER) in anchor_ders:
        return None  # the operator put this very certificate in the CA bundle
    current, used = leaf, []
    for _ in range(MAX_CHAIN):
        for anchor in anchors:
            if anchor.subject == current.issuer and _is_ca(anchor) and _issued_by(current, anchor):
                return _validity_problem(anchor, now)
        parent = next((c for c in others if c not in used and c.subject == current.issuer
                       and _is_ca(c) and _issued_by(current, c)), None)
        if parent is None:
            return "no path to a trusted CA"
        problem = _validity_problem(parent, now)
        if problem:
            return problem
        used.append(parent)
        current = parent
    return "certificate chain too long"
