"""Native binaries (ELF, Mach-O, PE) against the platforms the manifest declares."""

from __future__ import annotations

from collections.abc import Iterator

from ..archive_walk import FileInfo
from ..model import Finding
from .registry import bundle_scanner
from .run import BundleView


ELF_MACHINES = {0x03: "x86", 0x3E: "x86_64", 0x28: "arm", 0xB7: "arm64", 0xF3: "riscv64"}
MACHO_CPUS = {7: "x86", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64"}
PE_MACHINES = {0x14C: "x86", 0x8664: "x86_64", 0xAA64: "arm64", 0x1C4: "arm"}


def native_binary(view: BundleView, info: FileInfo) -> tuple[str, str] | None:
    """(platform, architecture) of an ELF, Mach-O or PE file, from its first bytes."""
    head = info.head
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        order = "little" if head[5] == 1 else "big"
        return "linux", ELF_MACHINES.get(int.from_bytes(head[18:20], order), "unknown")
    if head[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"):
        order = "big" if head[0] == 0xFE else "little"
        return "darwin", MACHO_CPUS.get(int.from_bytes(head[4:8], order), "unknown")
    if head[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf") and int.from_bytes(head[4:8], "big") < 30:
        return "darwin", "universal"  # a fat Mach-O (Java class files share the magic but have larger values)
    if head[:2] == b"MZ" and len(head) >= 64:
        offset = int.from_bytes(head[60:64], "little")
        if offset < 64 * 1024:
            data = head if offset + 6 <= len(head) else view.read(info.path, offset + 6)
            if data[offset:offset + 4] == b"PE\0\0":
                return "win32", PE_MACHINES.get(int.from_bytes(data[offset + 4:offset + 6], "little"), "unknown")
    return None


@bundle_scanner("binaries")
def platform_binaries(view: BundleView) -> Iterator[Finding]:
    found = {path: kind for path, info in view.files.items() if (kind := native_binary(view, info))}
    if not found:
        return
    have = {platform for platform, _ in found.values()}
    compat = view.manifest.get("compatibility") or {}
    declared = set(compat.get("platforms") or [])
    is_binary_server = view.server.get("type") == "binary"
    summary = ", ".join(sorted(f"{p}/{a}" for p, a in set(found.values())))
    if not declared:
        if have != {"darwin", "linux", "win32"}:
            yield Finding("binaries.platforms_undeclared", "high" if is_binary_server else "medium", "",
                          f"native code only for {summary}, but compatibility.platforms is not declared")
        return
    for platform in sorted(declared - have):
        yield Finding("binaries.platform_missing", "high" if is_binary_server else "medium", "",
                      f"declares platform {platform} but its native code is only for {summary}")
    for path, (platform, arch) in sorted(found.items()):
        if platform not in declared:
            yield Finding("binaries.platform_undeclared", "low", path,
                          f"{platform}/{arch} binary, but compatibility.platforms does not include {platform}")
