"""The one canonical JSON of the appliance: what the ledger's leaves and the audit log's hash chain are made of.

Sorted keys, no spaces, UTF-8 as is, and no NaN or Infinity (they are not JSON, and a hash over them could
not be recomputed by another implementation).
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(value: Any) -> bytes:
    """canonical_json as UTF-8: what is hashed and signed."""
    return canonical_json(value).encode()
