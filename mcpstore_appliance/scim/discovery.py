"""The discovery documents (RFC 7644 section 4, RFC 7643 sections 5-7): what this service provider supports and
the schemas of its resources, limited to the attributes it keeps (clients such as scim2-tester build their
requests from them)."""

from __future__ import annotations

from .resources import GROUP_SCHEMA, USER_SCHEMA

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def _attr(name: str, kind: str = "string", *, required: bool = False, multi: bool = False, unique: str = "none",
          mutability: str = "readWrite", case_exact: bool = False, sub: list[dict] | None = None,
          description: str = "", references: list[str] | None = None) -> dict:
    attribute = {"name": name, "type": kind, "multiValued": multi, "description": description or name,
                 "required": required, "caseExact": case_exact, "mutability": mutability, "returned": "default",
                 "uniqueness": unique}
    if sub:
        attribute["subAttributes"] = sub
    if references:
        attribute["referenceTypes"] = references
    return attribute


USER_ATTRIBUTES = [
    _attr("userName", required=True, unique="server", description="Unique identifier for the user in this org"),
    _attr("name", "complex", sub=[_attr("formatted"), _attr("familyName"), _attr("givenName")]),
    _attr("displayName"),
    _attr("active", "boolean", description="false deprovisions: sessions end and tokens are revoked"),
    _attr("emails", "complex", multi=True, sub=[_attr("value", required=True), _attr("type"),
                                               _attr("primary", "boolean")]),
    _attr("groups", "complex", multi=True, mutability="readOnly",
          sub=[_attr("value", mutability="readOnly"), _attr("display", mutability="readOnly"),
               _attr("$ref", "reference", mutability="readOnly", references=["Group"]),
               _attr("type", mutability="readOnly")]),
]
GROUP_ATTRIBUTES = [
    _attr("displayName", required=True, unique="server",
          description="A group named admin, publisher, auditor or member grants that org role"),
    _attr("members", "complex", multi=True,
          sub=[_attr("value", mutability="immutable"),
               _attr("$ref", "reference", mutability="immutable", references=["User"])]),
]


def service_provider_config(base: str) -> dict:
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/mcpstore/appliance#provisioning-with-scim",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": 200},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
                                   "description": "An org SCIM token: Authorization: Bearer mcpscim_…"}],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }


def resource_types(base: str) -> list[dict]:
    return [{"schemas": [RESOURCE_TYPE_SCHEMA], "id": kind, "name": kind, "endpoint": f"/{kind}s",
             "description": f"{kind}s of this organization", "schema": schema, "schemaExtensions": [],
             "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{kind}"}}
            for kind, schema in (("User", USER_SCHEMA), ("Group", GROUP_SCHEMA))]


def schemas(base: str) -> list[dict]:
    return [{"schemas": [SCHEMA_SCHEMA], "id": schema, "name": name, "description": f"{name} Account",
             "attributes": attributes, "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{schema}"}}
            for schema, name, attributes in ((USER_SCHEMA, "User", USER_ATTRIBUTES),
                                             (GROUP_SCHEMA, "Group", GROUP_ATTRIBUTES))]
