"""Real peers for e2e tests: the official `mcpb` CLI from npm, and example bundles it packs and signs.

The CLI is installed once into a cache folder ($MCPSTORE_TEST_CACHE, default ~/.cache/mcpstore-tests) and
reused by later runs; a file lock keeps parallel sessions from installing it twice. node and npm must be on
PATH (.ci/run installs them); without them these tests fail, they never skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.data.bundles import make_png

MCPB_VERSION = "2.1.2"
MCPB_PACKAGE = f"@anthropic-ai/mcpb@{MCPB_VERSION}"


def mcpb_cache_dir() -> Path:
    return Path(os.environ.get("MCPSTORE_TEST_CACHE") or Path.home() / ".cache" / "mcpstore-tests")


@dataclass(frozen=True)
class McpbCli:
    binary: Path
    package_dir: Path  # node_modules/@anthropic-ai/mcpb

    def run(self, *args: str | Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.binary), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"mcpb {' '.join(map(str, args))} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    @property
    def self_signed_cert(self) -> Path:
        """Where `mcpb sign --self-signed` keeps the certificate it generates (inside the package)."""
        return self.package_dir / "dist" / "self-signed-cert.pem"

    def init(self, directory: Path) -> dict:
        directory.mkdir(parents=True, exist_ok=True)
        self.run("init", "-y", directory)
        return json.loads((directory / "manifest.json").read_text())

    def pack(self, directory: Path, output: Path) -> Path:
        self.run("pack", directory, output, cwd=directory.parent)
        return output

    def sign_self_signed(self, bundle: Path) -> None:
        self.run("sign", bundle, "--self-signed")

    def sign(self, bundle: Path, cert: Path, key: Path, intermediates: list[Path] = ()) -> None:
        args: list[str | Path] = ["sign", bundle, "-c", cert, "-k", key]
        if intermediates:
            args += ["-i", *intermediates]
        self.run(*args)

    def unsign(self, bundle: Path) -> None:
        self.run("unsign", bundle)


def _install(prefix: Path) -> None:
    for tool in ("node", "npm", "openssl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not on PATH; the mcpb e2e tests need node, npm and openssl")
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                    MCPB_PACKAGE], check=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def mcpb_cli() -> McpbCli:
    cache = mcpb_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    prefix = cache / f"npm-mcpb-{MCPB_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "mcpb"
    with open(cache / ".mcpb-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            _install(prefix)
    cli = McpbCli(binary, prefix / "node_modules" / "@anthropic-ai" / "mcpb")
    version = cli.run("--version").stdout.strip()
    assert version == MCPB_VERSION, f"cached mcpb is {version}, expected {MCPB_VERSION}; delete {prefix}"
    return cli


# A dependency-free stdio MCP server: enough to be a real entry point, nothing to install.
NODE_SERVER = """\
import { createInterface } from "node:readline";
const tools = [{ name: "echo", description: "Echo the input", inputSchema: { type: "object" } }];
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const msg = JSON.parse(line);
  const reply = (result) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result }) + "\\n");
  if (msg.method === "initialize") reply({ protocolVersion: "2025-06-18", capabilities: { tools: {} },
                                           serverInfo: { name: "hello-node", version: "1.0.0" } });
  else if (msg.method === "tools/list") reply({ tools });
  else if (msg.method === "tools/call") reply({ content: [{ type: "text", text: JSON.stringify(msg.params) }] });
});
"""

PYTHON_SERVER = """\
import json
import sys

import tinyjson_rpc  # vendored in server/lib


def main() -> None:
    for line in sys.stdin:
        print(json.dumps(tinyjson_rpc.handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
"""

PYTHON_DEP = """\
def handle(message):
    return {"jsonrpc": "2.0", "id": message.get("id"), "result": {"tools": []}}
"""


@pytest.fixture(scope="session")
def example_servers(mcpb_cli: McpbCli, tmp_path_factory) -> dict[str, Path]:
    """Pack a node and a python example server with the real CLI; sign a copy of the node one.

    Returns {"node": unsigned node bundle, "python": unsigned python bundle, "signed": signed node bundle,
    "node_unsigned_copy": a byte copy of the node bundle taken before signing}.
    """
    root = tmp_path_factory.mktemp("mcpb-examples")
    node_dir = root / "hello-node"
    manifest = mcpb_cli.init(node_dir)
    (node_dir / "server").mkdir()
    (node_dir / "server" / "index.js").write_text(NODE_SERVER)
    (node_dir / "package.json").write_text(json.dumps({"name": "hello-node", "version": "1.0.0", "type": "module",
                                                       "private": True, "dependencies": {}}))
    (node_dir / "icon.png").write_bytes(make_png(64, 64))
    manifest.update(icon="icon.png", display_name="Hello Node", tools=[{"name": "echo", "description": "Echo"}],
                    keywords=["example"], compatibility={"runtimes": {"node": ">=18"}})
    (node_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))

    python_dir = root / "hello-python"
    manifest = mcpb_cli.init(python_dir)
    (python_dir / "server" / "lib" / "tinyjson_rpc").mkdir(parents=True)
    (python_dir / "server" / "main.py").write_text(PYTHON_SERVER)
    (python_dir / "server" / "lib" / "tinyjson_rpc" / "__init__.py").write_text(PYTHON_DEP)
    (python_dir / "requirements.txt").write_text("tinyjson-rpc==0.1\n")
    manifest["server"] = {"type": "python", "entry_point": "server/main.py",
                          "mcp_config": {"command": "python3", "args": ["${__dirname}/server/main.py"],
                                         "env": {"PYTHONPATH": "${__dirname}/server/lib"}}}
    manifest["compatibility"] = {"runtimes": {"python": ">=3.10"}}
    (python_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))

    bundles = {"node": mcpb_cli.pack(node_dir, root / "hello-node.mcpb"),
               "python": mcpb_cli.pack(python_dir, root / "hello-python.mcpb")}
    signed = root / "hello-node-signed.mcpb"
    shutil.copyfile(bundles["node"], signed)
    mcpb_cli.sign_self_signed(signed)
    bundles["signed"] = signed
    return bundles
