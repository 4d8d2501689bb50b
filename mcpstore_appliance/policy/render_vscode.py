"""VS Code and GitHub Copilot: the MCP gallery pointed at this appliance, and the allow and deny lists.

- `vscode`: VS Code's policies by their policy names (the content of Linux's /etc/vscode/policy.json; the same
  names are the ADMX values and the .mobileconfig keys VS Code ships). McpGalleryServiceUrl is the appliance's
  base URL: VS Code appends `/v0.1/servers` itself (MCP Registry reference §7). In allowlist mode ChatMCP is
  `registry`, so servers that are not in this registry are disabled.
- `copilot`: managed-settings.json (`allowedMcpServers` / `deniedMcpServers` by MCP Registry server name, the
  deny list winning, as in Claude Code). Copilot matches names only; the appliance's own checks are the
  enforcement that cannot be edited away.
"""

from __future__ import annotations

from .model import Policy
from .render_keys import RenderContext


def server_name(context: RenderContext, package: str) -> str:
    return f"{context.name_prefix}.{package}"


def vscode_policy(policy: Policy, context: RenderContext) -> dict:
    copilot: dict = {"deniedMcpServers": [{"serverName": server_name(context, p)} for p in policy.blocked_packages]}
    if policy.allow_only_listed:
        copilot["allowedMcpServers"] = [{"serverName": server_name(context, p)} for p in policy.allowed]
        copilot["allowManagedMcpServersOnly"] = True
    return {
        "vscode": {"McpGalleryServiceUrl": context.registry,
                   "ChatMCP": "registry" if policy.allow_only_listed else "all"},
        "copilot": copilot,
        "org": context.org, "policy_version": context.version,
    }
