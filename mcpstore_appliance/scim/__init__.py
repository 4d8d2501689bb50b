"""SCIM 2.0 provisioning (RFC 7643, RFC 7644) for organizations: an org's identity provider creates, updates,
deprovisions and groups the org's users. No HTTP here: web/scim_api.py serves it at /scim/v2/{org}/.

service.py holds the rules (users, groups, deprovisioning, groups -> roles), resources.py the JSON, filters.py
the `eq`/`and` filters as parameterized SQL, patch.py PATCH, discovery.py the discovery documents.
"""
