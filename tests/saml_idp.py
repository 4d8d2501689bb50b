"""A SAML 2.0 identity provider in the test process: pysaml2's `saml2.server.Server`, signing with a fresh RSA key
through Debian's xmlsec1. It reads the appliance's AuthnRequests (HTTP-Redirect) and answers with signed
Responses in the HTTP-POST binding's auto-submitting form, as a real IdP's login page would."""

from __future__ import annotations

import datetime
import functools
import html
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

ENTITY_ID = "https://idp.example.test/saml"
SSO_URL = "https://idp.example.test/sso"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


@functools.cache
def _key_pair(name: str) -> tuple[bytes, bytes]:
    """One RSA key and self-signed certificate per process (PEM), generated once: tests each write them anew."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


def make_key_pair(folder: Path, name: str = "idp") -> tuple[Path, Path]:
    key_file, cert_file = folder / f"{name}.key", folder / f"{name}.crt"
    key_pem, cert_pem = _key_pair(name)
    key_file.write_bytes(key_pem)
    cert_file.write_bytes(cert_pem)
    return key_file, cert_file


class TestIdP:
    __test__ = False  # not a test class

    def __init__(self, folder: Path):
        self.key_file, self.cert_file = make_key_pair(folder)
        self.sp_metadata: list[str] = []
        self._server: Server | None = None

    def config(self) -> IdPConfig:
        conf = IdPConfig()
        conf.load({
            "entityid": ENTITY_ID,
            "service": {"idp": {
                "endpoints": {"single_sign_on_service": [(SSO_URL, BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_BASIC}},
            }},
            "key_file": str(self.key_file), "cert_file": str(self.cert_file),
            "xmlsec_binary": shutil.which("xmlsec1"),
            "metadata": {"inline": self.sp_metadata} if self.sp_metadata else {},
            "allow_unknown_attributes": True,
        })
        return conf

    def metadata_xml(self) -> str:
        return create_metadata_string(None, config=self.config()).decode()

    def trust_sp(self, metadata: str) -> None:
        """Add a service provider (its metadata as the appliance serves it)."""
        self.sp_metadata.append(metadata)
        self._server = None

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = Server(config=self.config())
        return self._server

    def read_request(self, location: str):
        """The AuthnRequest in the appliance's redirect to our SSO URL."""
        assert location.startswith(SSO_URL + "?"), location
        query = parse_qs(urlsplit(location).query)
        return self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message

    def respond(self, request, email: str, groups: list[str], *, in_response_to: str | None = None,
                audience: str | None = None, display_name: str = "Alice Doe", sign_alg: str = SIG_RSA_SHA256,
                digest_alg: str = DIGEST_SHA256) -> tuple[str, dict[str, str]]:
        """A signed Response to `request` as the POST binding's form: (action URL, form fields). `in_response_to`
        and `audience` (another SP's entity id) make it answer something else."""
        response = self.server.create_authn_response(
            {"groups": groups, "displayName": [display_name]},
            in_response_to=in_response_to or request.id, destination=request.assertion_consumer_service_url,
            sp_entity_id=audience or request.issuer.text,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
            authn={"class_ref": PASSWORD, "authn_auth": ENTITY_ID}, sign_assertion=True, sign_response=False,
            sign_alg=sign_alg, digest_alg=digest_alg)
        form = self.server.apply_binding(BINDING_HTTP_POST, str(response), request.assertion_consumer_service_url,
                                         relay_state="", response=True)["data"]
        return read_post_form(form)


def read_post_form(page: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of an HTTP-POST binding page, as a browser submits them."""
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
    fields = {html.unescape(name): html.unescape(value) for name, value in
              re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page)}
    return action, fields
