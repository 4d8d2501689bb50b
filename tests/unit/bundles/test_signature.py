"""CMS signature blocks: layout, both digest variants, statuses, trust by pin and by CA chain.

Signatures here are made with `cryptography` (same CMS profile as `mcpb sign`); the real CLI's signatures are
checked in tests/e2e/test_mcpb_cli.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from mcpstore_appliance.bundles import BundleLimits, SignatureTrust, inspect_bundle
from mcpstore_appliance.bundles.signature import verify_cms
from mcpstore_appliance.errors import Unprocessable
from tests.data.bundles import (
    cms_signature,
    make_identity,
    sign_bytes,
    sign_bytes_comment_variant,
    signature_block,
    valid_node_bundle,
)


@pytest.fixture(scope="module")
def publisher():
    return make_identity("Publisher Self-Signed")


@pytest.fixture(scope="module")
def pki():
    root = make_identity("Test Root CA", ca=True, days=3650)
    intermediate = make_identity("Test Intermediate CA", issuer=root, ca=True, days=1800)
    leaf = make_identity("ACME Publisher", issuer=intermediate)
    return root, intermediate, leaf


@pytest.fixture(scope="module")
def unsigned():
    return valid_node_bundle()


@pytest.fixture
def inspect(tmp_path):
    def run(data: bytes, trust: SignatureTrust = SignatureTrust()):
        path = tmp_path / "bundle.mcpb"
        path.write_bytes(data)
        return inspect_bundle(path, BundleLimits(), trust)
    return run


def rejected(inspect, data: bytes, code: str, trust: SignatureTrust = SignatureTrust()) -> Unprocessable:
    with pytest.raises(Unprocessable) as caught:
        inspect(data, trust)
    assert caught.value.code == code, (caught.value.code, caught.value.message)
    return caught.value


def test_unsigned(inspect, unsigned):
    report = inspect(unsigned)
    assert report.signature.status == "unsigned"
    assert report.unsigned_sha256 == hashlib.sha256(unsigned).hexdigest()


def test_self_signed(inspect, unsigned, publisher):
    report = inspect(sign_bytes(unsigned, publisher))
    sig = report.signature
    assert sig.status == "self-signed" and sig.reason == "self-signed certificate"
    assert sig.fingerprint_sha256 == publisher.fingerprint
    assert sig.subject == sig.issuer == "O=Test,CN=Publisher Self-Signed"
    assert sig.not_before == publisher.cert.not_valid_before_utc
    assert sig.not_after == publisher.cert.not_valid_after_utc
    assert sig.digest_variant == "prefix"
    assert sig.signing_time is not None
    assert report.unsigned_sha256 == hashlib.sha256(unsigned).hexdigest()
    assert report.outcome == "published"


def test_comment_length_variant(inspect, unsigned, publisher):
    signed = sign_bytes_comment_variant(unsigned, publisher)
    report = inspect(signed)
    assert report.signature.status == "self-signed"
    assert report.signature.digest_variant == "comment-zeroed"
    assert report.unsigned_sha256 == hashlib.sha256(unsigned).hexdigest()


def test_dxt_markers(inspect, unsigned, publisher):
    der = cms_signature(unsigned, publisher)
    report = inspect(unsigned + signature_block(der, b"DXT_SIG_V1", b"DXT_SIG_END"))
    assert report.signature.status == "self-signed"


@pytest.mark.parametrize("where", ["zip_start", "zip_middle", "zip_end_record"])
def test_flipped_byte_in_the_signed_zip_is_invalid(inspect, unsigned, publisher, where):
    signed = bytearray(sign_bytes(unsigned, publisher))
    offset = {"zip_start": 10, "zip_middle": len(unsigned) // 2, "zip_end_record": len(unsigned) - 5}[where]
    signed[offset] ^= 0x01
    error = rejected(inspect, bytes(signed), "signature_invalid")
    assert "bytes were changed" in error.message


def test_flipped_byte_in_the_signature_is_invalid(inspect, unsigned, publisher):
    signed = bytearray(sign_bytes(unsigned, publisher))
    signed[-12 - 40] ^= 0x01  # inside the RSA signature value near the end of the DER
    rejected(inspect, bytes(signed), "signature_invalid")


def test_certificate_with_an_impossible_version_is_invalid(inspect, unsigned, publisher):
    """cryptography refuses a certificate version other than 1-3 with InvalidVersion, which is not a
    ValueError: found by tests/unit/bundles/test_archive_fuzz.py, it used to escape as a crash instead of a 422."""
    signed = bytearray(sign_bytes(unsigned, publisher))
    version = bytes.fromhex("a003020102")  # TBSCertificate: [0] EXPLICIT INTEGER 2 (v3)
    at = signed.rindex(version, len(unsigned))  # in the signature block, after the ZIP
    signed[at + 4] = 0x03  # "v4"
    error = rejected(inspect, bytes(signed), "signature_invalid")
    assert "malformed CMS signature (InvalidVersion)" in error.message


def test_signature_of_other_content_is_invalid(inspect, unsigned, publisher):
    der = cms_signature(b"some other zip", publisher)
    rejected(inspect, unsigned + signature_block(der), "signature_invalid")


def test_garbage_der_is_invalid(inspect, unsigned):
    error = rejected(inspect, unsigned + signature_block(b"\x30\x03\x02\x01\x01"), "signature_invalid")
    assert error.details[0]["path"] == "(signature block)"


def test_footer_without_a_well_formed_block_is_invalid(inspect, unsigned):
    rejected(inspect, unsigned + b"MCPB_SIG_V1" + struct.pack("<I", 999) + b"short" + b"MCPB_SIG_END",
             "signature_invalid")
    rejected(inspect, unsigned + b"garbage" + b"MCPB_SIG_END", "signature_invalid")


def test_pinned_certificate_is_signed(inspect, unsigned, publisher):
    pin = ":".join(publisher.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()  # colons and case ignored
    report = inspect(sign_bytes(unsigned, publisher), SignatureTrust(pinned_fingerprints=frozenset([pin])))
    assert report.signature.status == "signed" and report.signature.reason == "pinned certificate"


def test_ca_chained_is_signed(inspect, unsigned, pki):
    root, intermediate, leaf = pki
    trust = SignatureTrust(ca_bundle_pem=root.cert_pem)
    report = inspect(sign_bytes(unsigned, leaf, [intermediate.cert]), trust)
    assert report.signature.status == "signed"
    assert report.signature.reason == "chains to a trusted CA"
    assert report.signature.fingerprint_sha256 == leaf.fingerprint
    assert report.signature.issuer == "O=Test,CN=Test Intermediate CA"


def test_ca_chain_with_missing_intermediate_is_not_trusted(inspect, unsigned, pki):
    root, _, leaf = pki
    report = inspect(sign_bytes(unsigned, leaf), SignatureTrust(ca_bundle_pem=root.cert_pem))
    assert report.signature.status == "self-signed"
    assert report.signature.reason == "issuer not trusted: no path to a trusted CA"


def test_intermediate_in_the_ca_bundle_is_enough(inspect, unsigned, pki):
    _, intermediate, leaf = pki
    report = inspect(sign_bytes(unsigned, leaf), SignatureTrust(ca_bundle_pem=intermediate.cert_pem))
    assert report.signature.status == "signed"


def test_other_ca_is_not_trusted(inspect, unsigned, pki):
    _, intermediate, leaf = pki
    other_root = make_identity("Other Root", ca=True)
    report = inspect(sign_bytes(unsigned, leaf, [intermediate.cert]), SignatureTrust(ca_bundle_pem=other_root.cert_pem))
    assert report.signature.status == "self-signed" and report.signature.reason.startswith("issuer not trusted")


def test_a_non_ca_certificate_cannot_issue(inspect, unsigned, pki):
    root, _, _ = pki
    not_a_ca = make_identity("Plain Leaf", issuer=root)
    grandchild = make_identity("Grandchild", issuer=not_a_ca)
    report = inspect(sign_bytes(unsigned, grandchild, [not_a_ca.cert]), SignatureTrust(ca_bundle_pem=root.cert_pem))
    assert report.signature.status == "self-signed"


def test_leaf_without_code_signing_usage_is_not_trusted(inspect, unsigned, pki):
    root, intermediate, _ = pki
    tls_leaf = make_identity("TLS Server", issuer=intermediate, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    report = inspect(sign_bytes(unsigned, tls_leaf, [intermediate.cert]), SignatureTrust(ca_bundle_pem=root.cert_pem))
    assert report.signature.status == "self-signed"
    assert "code signing" in report.signature.reason


def test_expired_certificate_is_not_trusted_even_when_pinned(unsigned):
    old = make_identity("Old Publisher", not_before=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), days=30)
    der = cms_signature(unsigned, old)
    digests = {"prefix": hashlib.sha256(unsigned).digest()}
    info = verify_cms(der, lambda name: digests, SignatureTrust(pinned_fingerprints=frozenset([old.fingerprint])))
    assert info.status == "self-signed" and "expired" in info.reason


def test_ecdsa_signer(inspect, unsigned):
    ec_publisher = make_identity("EC Publisher", key_type="ec")
    report = inspect(sign_bytes(unsigned, ec_publisher),
                     SignatureTrust(pinned_fingerprints=frozenset([ec_publisher.fingerprint])))
    assert report.signature.status == "signed"


def test_nested_signature_is_verified_and_flagged(inspect, unsigned, publisher, pki):
    _, intermediate, leaf = pki
    once = sign_bytes(unsigned, publisher)
    twice = sign_bytes(once, leaf, [intermediate.cert])
    report = inspect(twice)
    assert report.signature.fingerprint_sha256 == leaf.fingerprint  # the outer signature
    assert report.unsigned_sha256 == hashlib.sha256(once).hexdigest()  # what one `mcpb unsign` gives back
    assert [f.check_id for f in report.findings if f.check_id.startswith("signature")] == ["signature.nested"]


def test_nested_signature_with_a_broken_inner_block_is_invalid(inspect, unsigned, publisher):
    inner = bytearray(sign_bytes(unsigned, publisher))
    inner[-30] ^= 0x01
    rejected(inspect, sign_bytes(bytes(inner), publisher), "signature_invalid")


def test_require_signature_rejects_unsigned(inspect, unsigned, publisher):
    trust = SignatureTrust(require_signature=True)
    error = rejected(inspect, unsigned, "signature_required", trust)
    assert error.details == [{"path": "(signature block)", "message": "the bundle is not signed"}]
    assert inspect(sign_bytes(unsigned, publisher), trust).signature.status == "self-signed"


def test_two_signers_are_refused(unsigned, publisher, pki):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7
    _, _, leaf = pki
    der = (pkcs7.PKCS7SignatureBuilder().set_data(unsigned)
           .add_signer(publisher.cert, publisher.key, hashes.SHA256())
           .add_signer(leaf.cert, leaf.key, hashes.SHA256())
           .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
    info = verify_cms(der, lambda name: {"prefix": hashlib.sha256(unsigned).digest()}, SignatureTrust())
    assert info.status == "invalid" and "one signer" in info.reason


def test_attached_content_is_refused(unsigned, publisher):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7
    der = (pkcs7.PKCS7SignatureBuilder().set_data(unsigned).add_signer(publisher.cert, publisher.key, hashes.SHA256())
           .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    info = verify_cms(der, lambda name: {"prefix": hashlib.sha256(unsigned).digest()}, SignatureTrust())
    assert info.status == "invalid" and "detached" in info.reason
