"""Windows: a .reg file to import, and ADMX/ADML templates for Group Policy and Intune's ADMX ingestion.

The .reg writes REG_SZ values (strings, as Claude Desktop reads them) under HKLM: Claude Desktop's keys under
`SOFTWARE\\Policies\\Claude`, VS Code's under `SOFTWARE\\Policies\\Microsoft\\VSCode`, ours under
`SOFTWARE\\Policies\\mcpstore\\<org>`. It is UTF-16LE with a BOM and CRLF, as regedit writes version 5.00 files.
The ADMX declares one policy per value the .reg writes (same key, same value name); booleans as
enabledValue/disabledValue strings, the rest as text whose ADML default is the org's current value, so an
admin who enables a policy in the editor gets what the JSON policy says.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .model import Policy
from .render_keys import CLAUDE_REGISTRY_KEY, RenderContext, claude_desktop_keys, policy_keys
from .render_vscode import vscode_policy

VSCODE_REGISTRY_KEY = r"SOFTWARE\Policies\Microsoft\VSCode"
ADMX_NS = "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"
BOOL_TEXT = ("true", "false")


def registry_values(policy: Policy, context: RenderContext) -> dict[str, dict[str, str]]:
    """Registry key -> value name -> REG_SZ text: what every Windows format says."""
    return {
        CLAUDE_REGISTRY_KEY: claude_desktop_keys(policy),
        VSCODE_REGISTRY_KEY: vscode_policy(policy, context)["vscode"],
        context.registry_key: policy_keys(policy, context),
    }


def _reg_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reg_file(policy: Policy, context: RenderContext) -> bytes:
    lines = ["Windows Registry Editor Version 5.00", ""]
    for key, values in registry_values(policy, context).items():
        lines.append(f"[HKEY_LOCAL_MACHINE\\{key}]")
        lines += [f"{_reg_string(name)}={_reg_string(value)}" for name, value in values.items()]
        lines.append("")
    return "\ufeff".encode("utf-16-le") + "\r\n".join(lines + [""]).encode("utf-16-le")


def _policies(policy: Policy, context: RenderContext):
    """(policy id, registry key, value name, current text) for every value, in a stable order."""
    for key, values in registry_values(policy, context).items():
        prefix = {CLAUDE_REGISTRY_KEY: "Claude", VSCODE_REGISTRY_KEY: "VSCode"}.get(key, "Mcpstore")
        for name, text in values.items():
            yield f"{prefix}_{name}", key, name, text


def admx(policy: Policy, context: RenderContext) -> bytes:
    root = ET.Element("policyDefinitions", {"xmlns": ADMX_NS, "revision": f"{context.version}.0",
                                            "schemaVersion": "1.0"})
    namespaces = ET.SubElement(root, "policyNamespaces")
    ET.SubElement(namespaces, "target", {"prefix": "mcpstore", "namespace": f"{context.domain}.{context.org}"})
    ET.SubElement(namespaces, "using", {"prefix": "windows", "namespace": "Microsoft.Policies.Windows"})
    ET.SubElement(root, "resources", {"minRequiredRevision": f"{context.version}.0"})
    categories = ET.SubElement(root, "categories")
    ET.SubElement(categories, "category", {"name": "McpExtensions", "displayName": "$(string.McpExtensions)"})
    policies = ET.SubElement(root, "policies")
    for policy_id, key, name, text in _policies(policy, context):
        element = ET.SubElement(policies, "policy", {
            "name": policy_id, "class": "Machine", "displayName": f"$(string.{policy_id})",
            "explainText": f"$(string.{policy_id}_Explain)", "key": key, "valueName": name})
        ET.SubElement(element, "parentCategory", {"ref": "McpExtensions"})
        ET.SubElement(element, "supportedOn", {"ref": "windows:SUPPORTED_Windows7"})
        if text in BOOL_TEXT:
            for tag, value in (("enabledValue", "true"), ("disabledValue", "false")):
                ET.SubElement(ET.SubElement(element, tag), "string").text = value
        else:
            element.set("presentation", f"$(presentation.{policy_id})")
            ET.SubElement(ET.SubElement(element, "elements"), "text", {
                "id": policy_id, "valueName": name, "required": "true", "maxLength": "32767"})
    return _xml(root)


def adml(policy: Policy, context: RenderContext) -> bytes:
    root = ET.Element("policyDefinitionResources", {"xmlns": ADMX_NS, "revision": f"{context.version}.0",
                                                    "schemaVersion": "1.0"})
    ET.SubElement(root, "displayName").text = f"{context.brand}: MCP extensions policy for {context.org}"
    by = f" (run by {context.operator})" if context.operator else ""
    ET.SubElement(root, "description").text = f"Group policy of {context.org} from {context.brand}{by} at {context.registry}"
    resources = ET.SubElement(root, "resources")
    strings = ET.SubElement(resources, "stringTable")
    presentations = ET.SubElement(resources, "presentationTable")
    ET.SubElement(strings, "string", {"id": "McpExtensions"}).text = f"MCP extensions ({context.brand})"
    for policy_id, key, name, text in _policies(policy, context):
        ET.SubElement(strings, "string", {"id": policy_id}).text = name
        ET.SubElement(strings, "string", {"id": f"{policy_id}_Explain"}).text = (
            f"Sets {key}\\{name}. Policy version {context.version} of {context.org} says: {text}")
        if text not in BOOL_TEXT:
            presentation = ET.SubElement(presentations, "presentation", {"id": policy_id})
            box = ET.SubElement(presentation, "textBox", {"refId": policy_id})
            ET.SubElement(box, "label").text = name
            ET.SubElement(box, "defaultValue").text = text
    return _xml(root)


def _xml(root: ET.Element) -> bytes:
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
