"""keep_freed_memory: freed ~1 MiB buffers are reused from the heap instead of being faulted in again."""

from __future__ import annotations

import subprocess
import sys

# The publish pattern in small: a few ~1 MiB buffers alive at once (blocks in flight), all freed, again and
# again. Prints the minor page faults that took.
PROBE = """
import resource, sys
if sys.argv[1] == "keep":
    from mcpstore_appliance.memory import keep_freed_memory
    keep_freed_memory()
block = bytes(1536 * 1024)

def round_():
    alive = [bytearray(block) for _ in range(4)]  # fresh allocations, written to
    del alive

round_()  # the first round faults its pages in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
ROUND_PAGES = 4 * 1536 * 1024 // 4096  # pages one round touches


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return int(out.stdout)


def test_freed_buffers_are_reused_without_page_faults():
    default, kept = faults("default"), faults("keep")
    assert default > 4 * ROUND_PAGES  # glibc's defaults: freed blocks go back to the kernel, fault in again
    assert kept < ROUND_PAGES  # kept: 100 rounds fault in fewer pages than one round of fresh memory


def test_the_saml_library_is_loaded_at_the_first_saml_use_only():
    """python3-saml with xmlsec and lxml costs ~15 MB resident: an appliance without SAML does not load it."""
    probe = ("import sys, mcpstore_appliance.app, mcpstore_appliance.cli.main\n"
             "print(sorted(m for m in ('onelogin', 'xmlsec', 'lxml') if m in sys.modules))\n"
             "from mcpstore_appliance.accounts.saml_config import sp_urls, saml_settings\n"
             "saml_settings('https://r.example', 'acme', None)\n"
             "print(sorted(m for m in ('onelogin', 'xmlsec', 'lxml') if m in sys.modules))\n")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert lines[0] == "[]" and "'onelogin'" in lines[1]
