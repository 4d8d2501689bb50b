"""gateway/runtime.py and gateway/unpack.py: what a bundle may run, and the unpacking's zip safety."""

from __future__ import annotations

import pytest

from mcpstore_appliance.bundles.model import BundleLimits
from mcpstore_appliance.config import load_settings
from mcpstore_appliance.errors import Unprocessable
from mcpstore_appliance.gateway.runtime import launch_for
from mcpstore_appliance.gateway.unpack import unpack_bundle
from tests.data.bundles import bundle_bytes, make_zip, node_manifest, python_manifest


def test_allowlisted_runtimes_and_substitution():
    launch = launch_for(python_manifest())
    assert launch.argv == ("/usr/bin/python3", "/app/server/main.py")
    assert launch.env["PYTHONPATH"] == "/app/server/lib" and launch.env["HOME"] == "/tmp"
    assert launch_for(node_manifest()).argv == ("/usr/bin/node", "/app/server/index.js")
    binary = node_manifest(server={"type": "binary", "entry_point": "bin/srv",
                                   "mcp_config": {"command": "${__dirname}/bin/srv", "args": ["--x=${/}"]}})
    assert launch_for(binary).argv == ("/app/bin/srv", "--x=/")


@pytest.mark.parametrize("server", [
    {"type": "node", "entry_point": "a.js", "mcp_config": {"command": "/bin/sh", "args": ["-c", "id"]}},
    {"type": "python", "entry_point": "a.py", "mcp_config": {"command": "bash"}},
    {"type": "binary", "entry_point": "x", "mcp_config": {"command": "/usr/bin/curl"}},
    {"type": "binary", "entry_point": "x", "mcp_config": {"command": "${__dirname}/../../usr/bin/curl"}},
    {"type": "uv", "entry_point": "a.py"},
])
def test_host_commands_are_refused(server):
    with pytest.raises(Unprocessable):
        launch_for(node_manifest(server=server))


def test_user_config_goes_to_env_never_to_argv():
    fields = {"key": {"type": "string", "title": "k", "description": "d", "sensitive": True},
              "dirs": {"type": "directory", "title": "d", "description": "d", "multiple": True},
              "n": {"type": "number", "title": "n", "description": "d", "default": 10.0}}
    manifest = python_manifest(user_config=fields)
    manifest["server"]["mcp_config"].update(args=["/app/m.py", "${user_config.dirs}", "--n=${user_config.n}"],
                                            env={"KEY": "${user_config.key}"})
    launch = launch_for(manifest, {"key": "s3cret", "dirs": ["/tmp/a", "/tmp/b"]})
    assert launch.argv == ("/usr/bin/python3", "/app/m.py", "/tmp/a", "/tmp/b", "--n=10")
    assert launch.env["KEY"] == "s3cret" and "s3cret" not in repr(launch)
    manifest["server"]["mcp_config"]["args"] = ["--key=${user_config.key}"]
    with pytest.raises(Unprocessable, match="sensitive"):
        launch_for(manifest, {"key": "s3cret"})
    fields["key"]["required"] = True
    with pytest.raises(Unprocessable) as raised:
        launch_for(python_manifest(user_config=fields))
    assert raised.value.code == "user_config_missing"


def test_defaults_of_hosted_settings():
    hosted = load_settings(environ={}).hosted
    assert (hosted.memory_mb, hosted.pids, hosted.init_timeout_seconds, hosted.call_timeout_seconds,
            hosted.idle_timeout_seconds, hosted.max_message_bytes) == (512, 64, 15.0, 5.0, 300.0, 1 << 20)


def test_unpack_keeps_modes_and_refuses_unsafe_zips(tmp_path):
    bundle = tmp_path / "ok.mcpb"
    bundle.write_bytes(bundle_bytes(node_manifest(), {"bin/tool": "#!/bin/sh\n"}, modes={"bin/tool": 0o100755}))
    unpack_bundle(bundle, tmp_path / "ok", BundleLimits())
    assert (tmp_path / "ok" / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "ok" / "manifest.json").stat().st_mode & 0o777 == 0o644
    for name, files, modes in [("link", {"manifest.json": "{}", "l": "/etc/passwd"}, {"l": 0o120777}),
                               ("dots", {"manifest.json": "{}", "../evil": "x"}, None)]:
        bad = tmp_path / f"{name}.mcpb"
        bad.write_bytes(make_zip(files, modes=modes))
        with pytest.raises(Unprocessable):
            unpack_bundle(bad, tmp_path / name, BundleLimits())
    assert not (tmp_path / "evil").exists()
    bomb = tmp_path / "bomb.mcpb"
    bomb.write_bytes(make_zip({"manifest.json": "{}", "big": b"\0" * (4 << 20)}))
    with pytest.raises(Unprocessable):
        unpack_bundle(bomb, tmp_path / "bomb", BundleLimits(max_uncompressed_bytes=1 << 20))
