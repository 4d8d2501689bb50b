"""The README's shell blocks work when pasted in order on a fresh machine: they run here, as written, in a fresh
copy of the repository, against a copy of the package freshly installed by the README's own `pip install .`.
If the README drifts from the code (a command renamed, a flag gone, a step missing), this test fails.

An HTML comment on the line before a block says how to run it:
- `<!-- readme-test: background … -->`: in a shell of its own, left running (`mcpstore serve`); the next
  blocks run once the appliance answers /readyz, and it is stopped at the end.
- `<!-- readme-test: skip … -->`: not run (the comment says why).
- no comment: run in order in one shell session (the "second terminal"), so that variables and the activated
  venv carry from block to block; with `set -e`, the first failing command fails the test.

Where this differs from a user's machine, and why:
- Port 8080 becomes a free port, in the blocks' URLs and for `serve` (MCPSTORE_SERVER__PORT, a documented
  override): another server may hold 8080 on a shared machine.
- `python3 -m venv .venv && .venv/bin/pip install .` runs as written, into a .venv prepared beforehand with a
  `.pth` file that makes the test venv's installed dependencies importable, and with pip told to install no
  dependencies and use no build isolation (PIP_NO_DEPS, PIP_NO_BUILD_ISOLATION). So pip still builds this
  package (and its C module) from the fresh copy and installs it into .venv, in ~10 s instead of the ~1 min it
  takes to download and install every dependency again; the dependencies are the versions pyproject.toml
  resolved for the test venv.
- HOME is an empty folder (the CLI's token and pinned ledger key go there) and no venv is on PATH; npm's cache
  is kept between runs (in MCPSTORE_TEST_CACHE, as for the e2e mcpb fixture), so npx fetches the mcpb CLI once
  per machine. node and npm must be installed (.ci/run does); without them this test fails, it never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import mcpb_cache_dir

ROOT = Path(__file__).parents[2]
SHELLS = ("sh", "bash", "shell", "console")
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mode>\w+)[^>]*-->\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)^```", re.S | re.M)
README_PORT = "127.0.0.1:8080"

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Block:
    mode: str  # "run", "background" or "skip"
    code: str


def shell_blocks(text: str) -> list[Block]:
    blocks = []
    for match in BLOCK.finditer(text):
        if match["lang"] in SHELLS:
            mode = match["mode"] or "run"
            assert mode in ("run", "background", "skip"), f"unknown readme-test mode {mode!r}"
            blocks.append(Block(mode, match["code"]))
    return blocks


def test_the_readme_blocks_are_found():
    """The parsing above is what the real test relies on: the README's blocks are all there, each marked."""
    blocks = shell_blocks((ROOT / "README.md").read_text())
    modes = [block.mode for block in blocks]
    assert modes.count("background") == 1 and modes.index("background") == 0
    assert "bash .ci/run\n" in [block.code for block in blocks if block.mode == "skip"]
    commands = "".join(block.code for block in blocks if block.mode == "run")
    for step in ("mcpstore admin create-user", "--password-stdin", "mcpstore login", "mcpstore publish",
                 "mcpstore search", "mcpstore download", "mcpstore verify"):
        assert step in commands, step


def copy_of_the_repository(target: Path) -> Path:
    """The files a fresh clone has (tracked ones, and new ones not ignored, so uncommitted work is tested)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def fresh_environment(home: Path, port: int) -> dict[str, str]:
    test_venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and p != test_venv_bin)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MCPSTORE_", "PIP_NO_", "XDG_CONFIG")) and key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=path, HOME=str(home), MCPSTORE_SERVER__PORT=str(port),
               PIP_NO_DEPS="1",  # the dependencies come from the test venv (the .pth file below)
               PIP_NO_BUILD_ISOLATION="0",  # sic: for pip, this variable set to 0 turns build isolation off
               npm_config_cache=str(mcpb_cache_dir() / "npm-cache"), npm_config_update_notifier="false")
    return env


def prepare_venv(checkout: Path, env: dict[str, str]) -> None:
    python3 = shutil.which("python3", path=env["PATH"])
    assert python3, "python3 is not on PATH"
    version = subprocess.run([python3, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version == str(sys.version_info[:2]), f"python3 on PATH is {version}; the test venv's deps need its own"
    subprocess.run([python3, "-m", "venv", str(checkout / ".venv")], check=True, env=env, timeout=300)
    site = Path(subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # Plain path lines: the test venv's own .pth files (its editable install of this package) are not run,
    # so the only mcpstore_appliance the new venv sees is the one the README's pip installs.
    (site / "test-venv-dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(deps)))


def wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the README's start block exited ({server.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the appliance did not answer within {timeout} s:\n{log.read_text()}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.timeout(900)
def test_the_readme_works_pasted_in_order_on_a_fresh_copy(tmp_path):
    port = free_port()
    text = (ROOT / "README.md").read_text().replace(README_PORT, f"127.0.0.1:{port}")
    blocks = [block for block in shell_blocks(text) if block.mode != "skip"]
    assert not any("8080" in block.code for block in blocks), "a block reaches port 8080 some other way"
    checkout = copy_of_the_repository(tmp_path / "checkout")
    (tmp_path / "home").mkdir()
    env = fresh_environment(tmp_path / "home", port)
    assert shutil.which("mcpstore", path=env["PATH"]) is None, "mcpstore is on PATH before the README puts it there"
    prepare_venv(checkout, env)

    log = tmp_path / "serve.log"
    (background,) = [block.code for block in blocks if block.mode == "background"]
    with open(log, "w") as output:
        server = subprocess.Popen(["bash", "-c", background], cwd=checkout, env=env, stdout=output,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, log)
        script = "set -eo pipefail\n" + "".join(block.code for block in blocks if block.mode == "run")
        result = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=600)
        assert result.returncode == 0, (f"a README command failed ({result.returncode}):\n{result.stdout}\n"
                                        f"{result.stderr}\n--- serve ---\n{log.read_text()}")
    finally:
        stop(server)

    # what the blocks were meant to do, they did
    installed = checkout / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    assert (installed / "mcpstore_appliance" / "app.py").is_file()  # the README's install, not the test venv's
    assert (checkout / "mcpstore-data" / "mcpstore.sqlite3").is_file()  # ./mcpstore-data where serve ran
    assert "published you/my-server@1.0.0" in result.stdout
    assert re.search(r"^you/my-server@1\.0\.0 +0\.10 USD/call", result.stdout, re.M)  # a line of the search
    assert (checkout / "downloaded.mcpb").read_bytes() == (checkout / "my-server.mcpb").read_bytes()
    assert "verified: downloaded.mcpb" in result.stdout
