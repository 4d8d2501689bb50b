"""Keep freed buffers in the process instead of handing them back to the kernel at once.

The appliance's heavy paths allocate and free buffers of about 1 MiB again and again: upload blocks and their
hashing, inflated ZIP entries and scan windows while publishing, group_concat values while auditing the
ledger. glibc's defaults give such buffers back at free (mmap above a threshold that starts at 128 KiB, heap
trimming above 128 KiB free), so the next one is faulted in and zeroed page by page, which can cost as much
CPU as the work itself (figures in benchmarks/README.md). Fixed thresholds keep them in the heap; memory then
stays at the peak of what was really in use (bounded: buffers are streamed, never whole bundles), not above it.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 2 << 20, trim_threshold: int = 16 << 20) -> None:
    """Allocations below `mmap_threshold` come from the heap, which is trimmed only past `trim_threshold` of
    free space at its top. Setting them also stops glibc's own adjustment of both. No-op without glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    mallopt(M_TRIM_THRESHOLD, trim_threshold)
