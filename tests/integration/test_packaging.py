"""Templates, static files and migrations are found from an installed wheel, not only from a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_carries_resources_and_finds_them_when_installed(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir)], check=True, capture_output=True, cwd=tmp_path, timeout=300)
    (wheel,) = wheel_dir.glob("mcpstore_appliance-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mcpstore_appliance/db/migrations/001_accounts.sql" in names
    for folder in ("templates", "static"):
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert {f"mcpstore_appliance/_resources/{name}" for name in shipped} <= names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = ("from mcpstore_appliance.resources import resource_dir, migrations_dir;"
             "print(resource_dir('templates')); print(resource_dir('static')); print(migrations_dir())")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    templates, static, migrations = result.stdout.split()
    assert Path(templates) == target / "mcpstore_appliance" / "_resources" / "templates"
    assert Path(static) == target / "mcpstore_appliance" / "_resources" / "static"
    assert (Path(migrations) / "001_accounts.sql").exists()
