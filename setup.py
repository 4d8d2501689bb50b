"""Build hook: ship the top-level templates/ and static/ inside the wheel as mcpstore_appliance/_resources/,
where mcpstore_appliance.resources.resource_dir finds them after a non-editable install; and build the ledger
audit's optional C accelerator (OpenSSL's SHA-256 over whole buffers: no well-kept package does batch RFC 6962
hashing). Without a compiler or OpenSSL's headers the install goes on and the audit runs its pure-Python code."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

RESOURCE_FOLDERS = ("templates", "static")


class BuildWithResources(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "mcpstore_appliance" / "_resources"
        for name in RESOURCE_FOLDERS:
            source = Path(__file__).parent / name
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True)


MERKLE_NATIVE = Extension(
    "mcpstore_appliance.ledger._merkle_native", ["mcpstore_appliance/ledger/_merkle_native.c"],
    libraries=["crypto"], optional=True)

setup(cmdclass={"build_py": BuildWithResources}, ext_modules=[MERKLE_NATIVE])
