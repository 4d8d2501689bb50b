"""Build hook: ship the top-level templates/ and static/ inside the wheel as mcpstore_appliance/_resources/,
where mcpstore_appliance.resources.resource_dir finds them after a non-editable install."""

import shutil
from pathlib import Path

from setuptools import setup
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


setup(cmdclass={"build_py": BuildWithResources})
