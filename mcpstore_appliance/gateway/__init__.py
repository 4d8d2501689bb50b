"""Hosted execution: published bundles run in a sandbox, one per session, behind a remote MCP endpoint.

- `runtime`: what runs (an allowlisted runtime, argv and environment from the manifest's `mcp_config`);
- `unpack`: the bundle unpacked with the publishing pipeline's zip safety, mounted read-only at /app;
- `sandbox` (the Backend protocol and detection), `bwrap` (bubblewrap + per-sandbox cgroups), `docker_backend`;
- `stdio`: the JSON-RPC client over the sandboxed server's stdin/stdout;
- `sessions`: caps, timeouts and the idle reaper; `service`: access, sessions and metering for the web layer.

No aiohttp here: web/mcp_api.py is the HTTP surface.
"""
