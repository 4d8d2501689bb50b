"""An org's SAML identity provider as its admin configures it, checked; and the settings python3-saml (strict
mode) is given for that org as a service provider.

The IdP is given either as its metadata XML (parsed by python3-saml's parser, which refuses DTDs and entity
declarations, so no external entity is ever fetched or expanded) or as entity id, SSO URL and signing
certificate. The appliance is one SP per org: entity id `<base>/saml/<org>/metadata`, assertion consumer
`<base>/saml/<org>/acs` (HTTP-POST).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from ..errors import InvalidInput, TooLarge
from .saml_library import onelogin

MAX_METADATA = 512 * 1024
MAX_TEXT = 1024
DEFAULT_GROUP_ATTRIBUTE = "groups"


@dataclass(frozen=True)
class IdpConfig:
    entity_id: str
    sso_url: str
    certificate: str  # base64 DER, one line
    group_attribute: str = DEFAULT_GROUP_ATTRIBUTE
    email_attribute: str | None = None  # None: the NameID is the e-mail address
    enabled: bool = True


def sp_urls(base_url: str, slug: str) -> dict[str, str]:
    root = f"{base_url}/saml/{slug}"
    return {"entity_id": f"{root}/metadata", "acs_url": f"{root}/acs", "metadata_url": f"{root}/metadata",
            "login_url": f"{root}/login"}


def from_metadata(xml: str) -> dict[str, str]:
    """entity_id, sso_url and certificate from an IdP's metadata XML (the first IDPSSODescriptor)."""
    if not isinstance(xml, str) or not xml.strip():
        raise InvalidInput("metadata_xml is the IdP's metadata document", code="invalid_metadata")
    if len(xml.encode()) > MAX_METADATA:
        raise TooLarge(f"the metadata is larger than {MAX_METADATA // 1024} KiB", code="metadata_too_large")
    try:
        library = onelogin()
        parsed = library.MetadataParser.parse(xml, required_sso_binding=library.SAML.BINDING_HTTP_REDIRECT)
    except Exception as exc:  # lxml's and the parser's own errors (a DTD or entity is refused here)
        raise InvalidInput(f"the metadata could not be read: {str(exc)[:200]}", code="invalid_metadata") from None
    idp = parsed.get("idp") or {}
    certs = (idp.get("x509certMulti") or {}).get("signing") or [idp.get("x509cert")]
    found = {"entity_id": idp.get("entityId"), "sso_url": (idp.get("singleSignOnService") or {}).get("url"),
             "certificate": next((c for c in certs if c), None)}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise InvalidInput(f"the metadata has no {', '.join(missing)} (an IDPSSODescriptor with an HTTP-Redirect "
                           "SingleSignOnService and a signing certificate)", code="invalid_metadata",
                           details={"missing": missing})
    return found


def check_config(values: dict) -> IdpConfig:
    """The admin's input, checked: an https SSO URL, a parsable X.509 certificate, short attribute names."""
    entity_id = _text(values.get("entity_id"), "entity_id")
    sso_url = _text(values.get("sso_url"), "sso_url")
    if urlsplit(sso_url).scheme != "https" or not urlsplit(sso_url).hostname:
        raise InvalidInput("sso_url must be an https URL", code="invalid_saml_config", details={"field": "sso_url"})
    group_attribute = _text(values.get("group_attribute") or DEFAULT_GROUP_ATTRIBUTE, "group_attribute")
    email_attribute = values.get("email_attribute")
    email_attribute = _text(email_attribute, "email_attribute") if email_attribute else None
    return IdpConfig(entity_id, sso_url, certificate_b64(values.get("certificate")), group_attribute,
                     email_attribute, bool(values.get("enabled", True)))


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or not value.strip().isprintable():
        raise InvalidInput(f"{field} is required (1-{MAX_TEXT} printable characters)", code="invalid_saml_config",
                           details={"field": field})
    return value.strip()


def certificate_b64(text: object) -> str:
    """A certificate given as PEM or base64 DER, as one line of base64 DER; refused unless X.509 reads it."""
    if not isinstance(text, str) or not text.strip() or len(text) > 64 * 1024:
        raise InvalidInput("certificate is the IdP's signing certificate (PEM or base64)", code="invalid_certificate",
                           details={"field": "certificate"})
    body = "".join(line.strip() for line in text.strip().splitlines() if line.strip() and "-----" not in line)
    try:
        der = base64.b64decode(body, validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise InvalidInput("certificate is not an X.509 certificate (PEM or base64 DER)", code="invalid_certificate",
                           details={"field": "certificate"}) from None
    return base64.b64encode(der).decode()


def saml_settings(base_url: str, slug: str, idp: IdpConfig | None) -> dict:
    """python3-saml's settings for one org: strict, the assertion must be signed (SHA-1 refused), one SP per
    org. Without `idp`, enough for the SP's own metadata."""
    urls, saml = sp_urls(base_url, slug), onelogin().SAML
    settings = {
        "strict": True, "debug": False,
        "sp": {"entityId": urls["entity_id"],
               "assertionConsumerService": {"url": urls["acs_url"], "binding": saml.BINDING_HTTP_POST},
               "NameIDFormat": saml.NAMEID_UNSPECIFIED, "x509cert": "", "privateKey": ""},
        "security": {"authnRequestsSigned": False, "wantAssertionsSigned": True, "wantMessagesSigned": False,
                     "wantAssertionsEncrypted": False, "wantNameIdEncrypted": False, "wantNameId": True,
                     "wantAttributeStatement": False, "requestedAuthnContext": False,
                     "rejectDeprecatedAlgorithm": True, "signMetadata": False},
    }
    if idp is not None:
        settings["idp"] = {"entityId": idp.entity_id, "x509cert": idp.certificate,
                           "singleSignOnService": {"url": idp.sso_url, "binding": saml.BINDING_HTTP_REDIRECT}}
    return settings
