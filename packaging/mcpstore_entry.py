"""The PyInstaller entry point of the `mcpstore` binary (packaging/build.sh).

It imports the package by name: PyInstaller runs the entry script as `__main__`, outside any package, so
`cli/main.py` itself (which uses relative imports) cannot be the entry script.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    # `mcpstore ledger verify` hashes in worker processes started by forkserver: in a binary they are started
    # by running the binary again, and freeze_support() turns such a run into the worker.
    multiprocessing.freeze_support()
    from mcpstore_appliance.cli.main import main

    sys.exit(main())
