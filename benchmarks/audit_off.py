"""`mcpstore serve` with the audit log switched off, for audit_bench.py's comparison only: every audit.record call
returns at once. (The appliance itself has no such switch: an audit log one setting can silence is no control.)

    python benchmarks/audit_off.py <mcpstore command...> serve --data DIR ...
"""

from __future__ import annotations

import sys

import mcpstore_appliance.audit as audit
import mcpstore_appliance.audit.retention as retention
import mcpstore_appliance.audit.service as service


async def _skip(*args, **kwargs) -> int:
    return 0


audit.record = service.record = retention.record = _skip

if __name__ == "__main__":
    from mcpstore_appliance.cli.main import main

    sys.exit(main(sys.argv[sys.argv.index("serve"):]))
