"""The documents name files that exist: docs/architecture.md's module paths and the README's links, so a
renamed or moved module shows up here and the page is updated with it."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "mcpstore_appliance"
MODULE = re.compile(r"`([\w./-]+\.(?:py|sql|md))`")  # module and document names (not data-folder paths)


def test_every_path_the_architecture_page_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    names = {name for name in MODULE.findall(text) if "NNN" not in name and "<" not in name}
    assert len(names) > 25  # the page does name the modules it describes
    missing = sorted(name for name in names
                     if not any((base / name).exists() for base in (ROOT, PACKAGE, PACKAGE / "web")))
    assert missing == []


def test_the_readme_links_point_into_the_repository():
    links = re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text())
    assert "docs/architecture.md" in links
    assert [link for link in links if not link.startswith("http") and not (ROOT / link).exists()] == []
    assert all(not link.startswith("..") for link in links)
