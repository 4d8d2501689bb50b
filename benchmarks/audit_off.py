"""`mcpstore serve` with the audit log switched off, for audit_bench.py's comparison only: every audit.record
and record_many call returns at once. (The appliance itself has no such switch: an audit log that one setting
can silence is no control.)

    AUDIT_BENCH_LOG=off python benchmarks/audit_off.py <mcpstore command...> serve --data DIR ...
"""

from __future__ import annotations

import os
import sys

import mcpstore_appliance.audit as audit
import mcpstore_appliance.audit.retention as retention
import mcpstore_appliance.audit.service as service


async def _skip(*args, **kwargs) -> int:
    return 0


if os.environ.get("AUDIT_BENCH_LOG") == "off":  # "on": the same wrapper, so both modes start alike
    audit.record = service.record = retention.record = _skip
    audit.record_many = service.record_many = _skip

if __name__ == "__main__":
    from mcpstore_appliance.cli.main import main

    sys.exit(main(sys.argv[sys.argv.index("serve"):]))
