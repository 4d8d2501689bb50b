"""Every MDM format, read back by a real parser, says what the signed JSON policy says.

plistlib reads the .mobileconfig; a small reader of regedit's format (below) reads the .reg; ElementTree reads
the ADMX and ADML, checked against the structure of Microsoft's ADMX schema (element order inside a policy,
required attributes, every $(string.*) and $(presentation.*) reference resolved in the ADML) and against the
.reg (the same keys and value names, the ADML defaults equal to the .reg's values).
"""

from __future__ import annotations

import json
import plistlib
import re
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from nacl.signing import SigningKey

from mcpstore_appliance.accounts.models import Org
from mcpstore_appliance.policy.artifacts import Artifacts
from mcpstore_appliance.policy.model import Policy
from mcpstore_appliance.policy.render_keys import CLAUDE_DOMAIN, policy_from_keys
from mcpstore_appliance.policy.service import PolicyVersion
from mcpstore_appliance.policy.signed import BadPolicySignature, verify

REGISTRY = "https://reg.example.com"
PREFIX = "com.example.reg"
CLAUDE_KEYS = {"isDesktopExtensionEnabled", "isDesktopExtensionSignatureRequired",
               "isDesktopExtensionDirectoryEnabled", "isLocalDevMcpEnabled"}
NS = "{http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions}"
# Microsoft's ADMX schema: the children of <policy>, in this order, each optional except supportedOn
POLICY_CHILDREN = ("parentCategory", "seeAlso", "keywords", "supportedOn", "enabledValue", "disabledValue",
                   "enabledList", "disabledList", "elements")
POLICY = Policy(allow_only_listed=True, allowed={"acme/tool": "^1.2.0", "acme/q": "*"}, blocked_packages=["x/evil"],
                blocked_publishers=["shady"], auto_install=["acme/tool"], minimum_versions={"acme/tool": "1.2.3"},
                require_signature=True, require_verified_publisher=True, allow_remote_servers=False,
                allow_local_dev_servers=False)


@pytest.fixture
def key():
    return SigningKey.generate()


def render(key, policy=POLICY, version=3):
    import hashlib

    from mcpstore_appliance.policy.service import policy_bytes

    current = PolicyVersion(Org(1, "acme", "Acme", 0.0), version, policy, hashlib.sha256(policy_bytes(policy)).hexdigest(),
                            "alice", 1_700_000_000.0)  # written long ago: iat is the start of today
    artifacts = Artifacts(key, REGISTRY, PREFIX)
    return {fmt: artifacts.render(current, fmt, time.time()) for fmt in ("json", "mobileconfig", "reg", "admx",
                                                                           "adml", "vscode.json")}


def json_policy(key, artifacts) -> Policy:
    signed = verify(artifacts["json"].body, bytes(key.verify_key), now=time.time())
    assert signed["org"] == "acme" and signed["policy_version"] == 3 and signed["registry"] == REGISTRY
    return Policy.model_validate(signed["policy"])


def read_reg(data: bytes) -> dict[str, dict[str, str]]:
    """A reader of regedit's version 5.00 files, for the REG_SZ values we write: UTF-16LE with a BOM, CRLF."""
    assert data[:2] == b"\xff\xfe"
    lines = data[2:].decode("utf-16-le").split("\r\n")
    assert lines[0] == "Windows Registry Editor Version 5.00" and lines[1] == ""
    keys: dict[str, dict[str, str]] = {}
    current = None
    value_line = re.compile(r'^"((?:[^"\\]|\\.)*)"="((?:[^"\\]|\\.)*)"$')
    for line in lines[2:]:
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = keys.setdefault(line[1:-1], {})
            continue
        match = value_line.match(line)
        assert match and current is not None, f"not a REG_SZ value line: {line!r}"
        unescape = lambda s: re.sub(r"\\(.)", r"\1", s)  # noqa: E731
        current[unescape(match.group(1))] = unescape(match.group(2))
    return keys


def test_signed_json_verifies_and_refuses_tampering(key):
    body = render(key)["json"].body
    assert json_policy(key, render(key)) == POLICY
    tampered = body.replace(b'"require_signature":true', b'"require_signature":false')
    assert tampered != body
    for bad, public in ((tampered, bytes(key.verify_key)), (body, bytes(SigningKey.generate().verify_key))):
        with pytest.raises(BadPolicySignature):
            verify(bad, public, now=time.time())
    with pytest.raises(BadPolicySignature):
        verify(body, bytes(key.verify_key), now=time.time() + 8 * 86400)
    again = render(key)["json"]  # the same version on the same day: the same bytes, the same ETag
    assert again.body == body and again.etag == render(key)["json"].etag


def test_mobileconfig_has_claude_desktops_keys_as_strings_and_the_policy(key):
    artifacts = render(key)
    profile = plistlib.loads(artifacts["mobileconfig"].body)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    assert profile["PayloadScope"] == "System"
    claude, ours = profile["PayloadContent"]
    assert claude["PayloadType"] == CLAUDE_DOMAIN
    keys = {k: v for k, v in claude.items() if not k.startswith("Payload")}
    assert set(keys) == CLAUDE_KEYS and all(type(v) is str for v in keys.values())
    assert keys == {"isDesktopExtensionEnabled": "true", "isDesktopExtensionSignatureRequired": "true",
                    "isDesktopExtensionDirectoryEnabled": "false", "isLocalDevMcpEnabled": "false"}
    assert ours["PayloadType"] == f"{PREFIX}.mcpstore.policy"
    stated = {k: v for k, v in ours.items() if not k.startswith("Payload")}
    assert all(type(v) is str for v in stated.values())
    assert policy_from_keys(stated) == json_policy(key, artifacts)
    # stable identifier per org, a new UUID per revision
    other = plistlib.loads(render(key, version=4)["mobileconfig"].body)
    assert other["PayloadIdentifier"] == profile["PayloadIdentifier"] and other["PayloadUUID"] != profile["PayloadUUID"]


def test_reg_file_says_the_same(key):
    artifacts = render(key)
    keys = read_reg(artifacts["reg"].body)
    claude = keys[r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Claude"]
    assert set(claude) == CLAUDE_KEYS and claude["isDesktopExtensionSignatureRequired"] == "true"
    assert policy_from_keys(keys[r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\mcpstore\acme"]) == json_policy(key, artifacts)
    assert keys[r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\VSCode"] == {"McpGalleryServiceUrl": REGISTRY,
                                                                              "ChatMCP": "registry"}


def test_admx_and_adml_declare_every_reg_value(key):
    artifacts = render(key)
    admx = ET.fromstring(artifacts["admx"].body)
    adml = ET.fromstring(artifacts["adml"].body)
    assert admx.tag == f"{NS}policyDefinitions" and adml.tag == f"{NS}policyDefinitionResources"
    assert [child.tag.removeprefix(NS) for child in admx] == ["policyNamespaces", "resources", "categories", "policies"]
    strings = {s.get("id"): s.text for s in adml.iter(f"{NS}string")}
    presentations = {p.get("id"): p for p in adml.iter(f"{NS}presentation")}
    declared = {}
    for policy in admx.iter(f"{NS}policy"):
        assert {"name", "class", "displayName", "key", "valueName"} <= set(policy.attrib)
        assert policy.get("class") in ("Machine", "User", "Both")
        order = [POLICY_CHILDREN.index(child.tag.removeprefix(NS)) for child in policy]
        assert order == sorted(order) and POLICY_CHILDREN.index("supportedOn") in order
        for attribute in ("displayName", "explainText"):
            assert strings[re.fullmatch(r"\$\(string\.(\w+)\)", policy.get(attribute)).group(1)]
        value = None
        if policy.find(f"{NS}enabledValue") is not None:
            assert policy.find(f"{NS}enabledValue/{NS}string").text == "true"
            assert policy.find(f"{NS}disabledValue/{NS}string").text == "false"
            value = "true" if "says: true" in strings[policy.get("name") + "_Explain"] else "false"
        else:
            text = policy.find(f"{NS}elements/{NS}text")
            assert text.get("valueName") == policy.get("valueName")
            presentation = presentations[re.fullmatch(r"\$\(presentation\.(\w+)\)", policy.get("presentation")).group(1)]
            box = presentation.find(f"{NS}textBox")
            assert box.get("refId") == text.get("id")
            value = box.find(f"{NS}defaultValue").text
        declared.setdefault("HKEY_LOCAL_MACHINE\\" + policy.get("key"), {})[policy.get("valueName")] = value
    assert declared == read_reg(artifacts["reg"].body)


def test_vscode_and_copilot_point_at_the_registry(key):
    artifacts = render(key)
    document = json.loads(artifacts["vscode.json"].body)
    assert document["vscode"] == {"McpGalleryServiceUrl": REGISTRY, "ChatMCP": "registry"}
    allowed = {entry["serverName"] for entry in document["copilot"]["allowedMcpServers"]}
    assert allowed == {f"{PREFIX}.{name}" for name in json_policy(key, artifacts).allowed}
    assert document["copilot"]["deniedMcpServers"] == [{"serverName": f"{PREFIX}.x/evil"}]
    open_policy = json.loads(render(key, Policy())["vscode.json"].body)
    assert open_policy["vscode"]["ChatMCP"] == "all" and "allowedMcpServers" not in open_policy["copilot"]


def test_default_policy_renders_claude_desktops_defaults(key):
    keys = read_reg(render(key, Policy())["reg"].body)[r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Claude"]
    assert keys == {"isDesktopExtensionEnabled": "true", "isDesktopExtensionSignatureRequired": "false",
                    "isDesktopExtensionDirectoryEnabled": "true", "isLocalDevMcpEnabled": "true"}


def _random_policies():
    from tests.unit.policy.test_decide import policies

    return policies


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=_random_policies())
def test_any_policy_says_the_same_in_every_format(key, policy):
    artifacts = render(key, policy)
    stated = json_policy(key, artifacts)
    assert stated == policy
    ours = plistlib.loads(artifacts["mobileconfig"].body)["PayloadContent"][1]
    assert policy_from_keys({k: v for k, v in ours.items() if not k.startswith("Payload")}) == stated
    assert policy_from_keys(read_reg(artifacts["reg"].body)[r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\mcpstore\acme"]) == stated
