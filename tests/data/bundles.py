"""Builders for test bundles, certificates and signature blocks (pure Python, no mcpb CLI).

Signature blocks are made with `cryptography`'s PKCS7SignatureBuilder (detached, binary, DER), which has the same
CMS profile as `mcpb sign` (contentType, messageDigest, signingTime signed attributes; RSA PKCS#1 v1.5).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DATA_DIR = Path(__file__).parent


def make_png(width: int = 1, height: int = 1) -> bytes:
    """A real PNG (signature, IHDR, IDAT, IEND with correct CRCs): RGBA, all transparent."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\0" + b"\0" * 4 * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG_1PX = make_png()


def node_manifest(**overrides) -> dict:
    manifest = {
        "manifest_version": "0.2",
        "name": "hello-node",
        "version": "1.0.0",
        "description": "A test server",
        "author": {"name": "Test Author", "email": "author@example.com"},
        "server": {
            "type": "node",
            "entry_point": "server/index.js",
            "mcp_config": {"command": "node", "args": ["${__dirname}/server/index.js"], "env": {}},
        },
        "license": "MIT",
    }
    manifest.update(overrides)
    return manifest


def python_manifest(**overrides) -> dict:
    return node_manifest(name="hello-python", server={
        "type": "python", "entry_point": "server/main.py",
        "mcp_config": {"command": "python3", "args": ["${__dirname}/server/main.py"],
                       "env": {"PYTHONPATH": "${__dirname}/server/lib"}}}, **overrides)


NODE_SERVER = b"process.stdin.on('data', () => {});\n"


def make_zip(files: dict[str, bytes | str] | list[tuple[str, bytes | str]], *,
             compression: int = zipfile.ZIP_DEFLATED, modes: dict[str, int] | None = None) -> bytes:
    """A ZIP like fflate writes: file entries, forward slashes. `files` may repeat names when given as a list."""
    buf = io.BytesIO()
    items = files.items() if isinstance(files, dict) else files
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, content in items:
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = ((modes or {}).get(name, 0o100644)) << 16
            data = content.encode() if isinstance(content, str) else content
            with _quiet_duplicates():
                zf.writestr(info, data)
    return buf.getvalue()


class _quiet_duplicates:
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def bundle_bytes(manifest: dict | bytes | None = None, extra: dict[str, bytes | str] | None = None, **kw) -> bytes:
    files: dict[str, bytes | str] = {}
    if manifest is not None:
        files["manifest.json"] = manifest if isinstance(manifest, bytes) else json.dumps(manifest, indent=2)
    if manifest is None or not isinstance(manifest, bytes):
        files["server/index.js"] = NODE_SERVER
    files.update(extra or {})
    return make_zip(files, **kw)


def valid_node_bundle(**extra) -> bytes:
    return bundle_bytes(node_manifest(), extra or None)


# ---------------------------------------------------------------------------------------------- certificates


@dataclass
class Identity:
    key: object
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")])


def make_identity(cn: str, *, issuer: Identity | None = None, ca: bool = False, key_type: str = "rsa",
                  days: int = 365, not_before: dt.datetime | None = None,
                  eku: list | None = None) -> Identity:
    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if key_type == "rsa"
           else ec.generate_private_key(ec.SECP256R1()))
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    elif eku is not None or issuer is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(eku if eku is not None else [ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    signer_key = issuer.key if issuer else key
    cert = builder.sign(signer_key, hashes.SHA256())  # type: ignore[arg-type]
    return Identity(key, cert)


def cms_signature(content: bytes, signer: Identity, extra_certs: list[x509.Certificate] = ()) -> bytes:
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(
        signer.cert, signer.key, hashes.SHA256())  # type: ignore[arg-type]
    for cert in extra_certs:
        builder = builder.add_certificate(cert)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
                                                      pkcs7.PKCS7Options.Binary])


def signature_block(der: bytes, header: bytes = b"MCPB_SIG_V1", footer: bytes = b"MCPB_SIG_END") -> bytes:
    return header + struct.pack("<I", len(der)) + der + footer


def sign_bytes(zip_bytes: bytes, signer: Identity, extra_certs: list[x509.Certificate] = ()) -> bytes:
    """The mcpb 2.1.2 layout: signature over the ZIP as stored, block appended."""
    return zip_bytes + signature_block(cms_signature(zip_bytes, signer, extra_certs))


def sign_bytes_comment_variant(zip_bytes: bytes, signer: Identity) -> bytes:
    """The upstream-main layout: hash with comment_length 0, then declare the block as the ZIP comment."""
    der = cms_signature(zip_bytes, signer)
    block = signature_block(der)
    eocd = zip_bytes.rfind(b"PK\x05\x06")
    patched = zip_bytes[:eocd + 20] + struct.pack("<H", len(block)) + zip_bytes[eocd + 22:]
    return patched + block


# ---------------------------------------------------------------------------------------------- raw ZIP edits

# Offsets of fields inside a central directory record and a local file header.
CD_FIELDS = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"), "compressed_size": (20, "<I"),
             "file_size": (24, "<I"), "external_attr": (38, "<I"), "header_offset": (42, "<I")}
LOCAL_FIELDS = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<I"), "compressed_size": (18, "<I"),
                "file_size": (22, "<I")}


def central_records(data: bytes) -> list[int]:
    """Offsets of the central directory records of a (simple, non-ZIP64) ZIP."""
    eocd = data.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack_from("<HII", data, eocd + 10)
    offsets, pos = [], cd_offset
    for _ in range(count):
        offsets.append(pos)
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + n + m + k
    return offsets


def patch_entry(data: bytes, index: int, *, local: bool = True, **fields: int) -> bytes:
    """Set central-directory (and, with local=True, local-header) fields of entry `index`."""
    out = bytearray(data)
    record = central_records(data)[index]
    header = struct.unpack_from("<I", data, record + 42)[0]
    for name, value in fields.items():
        offset, fmt = CD_FIELDS[name]
        struct.pack_into(fmt, out, record + offset, value)
        if local and name in LOCAL_FIELDS:
            offset, fmt = LOCAL_FIELDS[name]
            struct.pack_into(fmt, out, header + offset, value)
    return bytes(out)


def entry_field(data: bytes, index: int, name: str) -> int:
    offset, fmt = CD_FIELDS[name]
    return struct.unpack_from(fmt, data, central_records(data)[index] + offset)[0]
