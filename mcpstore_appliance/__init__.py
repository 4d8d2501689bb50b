"""mcpstore appliance: a self-hostable registry, marketplace and gateway for MCP Bundles."""

__version__ = "0.1.0"
