"""python3-saml, loaded at the first SAML use: with xmlsec and lxml it costs about 15 MB resident, which an
appliance none of whose orgs signs in with SAML need not pay."""

from __future__ import annotations

import functools
from types import SimpleNamespace


@functools.cache
def onelogin() -> SimpleNamespace:
    from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
    from onelogin.saml2.constants import OneLogin_Saml2_Constants
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
    from onelogin.saml2.response import OneLogin_Saml2_Response
    from onelogin.saml2.settings import OneLogin_Saml2_Settings
    from onelogin.saml2.utils import OneLogin_Saml2_Utils
    return SimpleNamespace(AuthnRequest=OneLogin_Saml2_Authn_Request, SAML=OneLogin_Saml2_Constants,
                           MetadataParser=OneLogin_Saml2_IdPMetadataParser, Response=OneLogin_Saml2_Response,
                           Settings=OneLogin_Saml2_Settings, Utils=OneLogin_Saml2_Utils)
