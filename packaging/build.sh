#!/usr/bin/env bash
# Build the `mcpstore` binary with PyInstaller: Python, the appliance, its dependencies, the templates, static
# files, SQL migrations and manifest schemas, the ledger audit's C module when it is built, and the version and
# git revision it was built from (`mcpstore --version`), stripped.
#
#   pip install -e '.[packaging]'        # once: PyInstaller into the Python that has the appliance installed
#   packaging/build.sh                   # -> dist/mcpstore.tar.gz, one file to ship, holding the folder
#                                        #    mcpstore/ (run mcpstore/mcpstore); also unpacked in dist/mcpstore/
#   packaging/build.sh --onefile         # -> dist/mcpstore, one self-unpacking executable (slower to start)
#   packaging/build.sh --out DIR         # somewhere else than dist/
#
# PYTHON picks the interpreter (default: the active venv's python, else .venv/bin/python, else python3). The
# binary runs on Linux machines of this architecture with this glibc or a newer one: build on the oldest you
# deploy to. Why the folder in an archive by default: the one-file build unpacks ~60 MB into $TMPDIR at every
# start (twice the start time; benchmarks/README.md, "The binary").
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
layout=onedir
out="$root/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --onedir) layout=onedir ;;
    --onefile) layout=onefile ;;
    --out) out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
    *) echo "usage: $0 [--onefile|--onedir] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON="$VIRTUAL_ENV/bin/python"
  elif [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"
  else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import PyInstaller, mcpstore_appliance' 2>/dev/null; then
  echo "$PYTHON lacks PyInstaller or the appliance: pip install -e '.[packaging]' first" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# PyInstaller's cache of stripped libraries is shared and not safe for two builds at once: one per build
export PYINSTALLER_CONFIG_DIR="$work/pyinstaller"

# The ledger audit's C module, built in place as an editable install does; without a compiler or OpenSSL's
# headers the binary audits in pure Python (setup.py marks the extension optional).
(cd "$root" && "$PYTHON" setup.py -q build_ext --inplace >/dev/null 2>&1) || true
native=(); c_module="absent (pure-Python ledger audit)"
if compgen -G "$root/mcpstore_appliance/ledger/_merkle_native*.so" >/dev/null; then
  native=(--hidden-import mcpstore_appliance.ledger._merkle_native); c_module="included"
fi

revision="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ "$revision" != unknown ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"  # built from a tree with uncommitted changes
fi
printf '{"revision": "%s", "built": "%s"}\n' "$revision" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$work/_build_info.json"

# The sandbox's seccomp filter, built now for hosts that have no Python to build it (the container image).
seccomp=()
if /usr/bin/python3 -c 'import seccomp' 2>/dev/null; then
  "$PYTHON" -c 'from mcpstore_appliance.gateway.bwrap import SECCOMP_SCRIPT; print(SECCOMP_SCRIPT)' \
    | /usr/bin/python3 - "$work/seccomp.bpf"
  seccomp=(--add-data "$work/seccomp.bpf:mcpstore_appliance/gateway")
else
  echo "note: no python3-seccomp here; the binary builds no seccomp filter where the host has no Python" >&2
fi

mode=(--onefile); [ $layout = onedir ] && mode=(--onedir)
# Optional imports of dependencies that the appliance never takes (pydantic's e-mail check, the Stripe SDK's
# httpx client, hypothesis' and rich's plugins...): left out, they would add about 5 MB to every start.
excludes=()
for module in tkinter pytest _pytest IPython hypothesis pygments rich dns email_validator httpx httpx2 anyio click; do
  excludes+=(--exclude-module "$module")
done
# Commands, scans and lazily imported modules are all named by import somewhere, but a few only inside
# functions or by name (bundles/__init__.py): collecting every submodule leaves nothing to chance.
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN "${mode[@]}" --strip --name mcpstore \
  --distpath "$work/dist" --workpath "$work/build" --specpath "$work" --paths "$root" \
  --collect-submodules mcpstore_appliance "${native[@]}" --hidden-import uvloop \
  --add-data "$root/templates:templates" --add-data "$root/static:static" \
  --add-data "$root/mcpstore_appliance/db/migrations:mcpstore_appliance/db/migrations" \
  --add-data "$root/mcpstore_appliance/bundles/schemas:mcpstore_appliance/bundles/schemas" \
  --add-data "$work/_build_info.json:mcpstore_appliance" "${seccomp[@]}" \
  "${excludes[@]}" \
  "$root/packaging/mcpstore_entry.py"

mkdir -p "$out"
if [ $layout = onefile ]; then
  rm -rf "$out/mcpstore"
  install -m 0755 "$work/dist/mcpstore" "$out/mcpstore"
  artifact="$out/mcpstore"
else
  rm -rf "$out/mcpstore"
  cp -a "$work/dist/mcpstore" "$out/mcpstore"
  tar -C "$out" -czf "$out/mcpstore.tar.gz" mcpstore
  artifact="$out/mcpstore.tar.gz (unpacked: $out/mcpstore/mcpstore)"
fi
echo "built $artifact: $(du -sh "${artifact%% *}" | cut -f1), revision $revision, C module $c_module"
