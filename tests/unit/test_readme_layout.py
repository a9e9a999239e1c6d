"""The README's "How it is built" names every module of src/ecr_mirror, one line each,
and names no module that is gone: the layout a newcomer reads is the one on disk."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "ecr_mirror"


def _layout() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## How it is built", 1)[1]
    block = section.split("```", 2)[1]
    return block.split("tests/unit/", 1)[0].splitlines()


def _listed() -> set[str]:
    """Module paths, relative to the package, as the indented block spells them."""
    listed, folder = set(), ""
    for line in _layout():
        m = re.match(r"^  (\s*)([\w/]+\.py|[\w]+/)\s", line + " ")
        if not m:
            continue
        indent, name = len(m.group(1)), m.group(2)
        if name.endswith("/"):
            folder = name
        else:
            listed.add((folder if indent else "") + name)
            if not indent:
                folder = ""
    return listed


def test_every_module_has_its_line_and_every_line_its_module():
    on_disk = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    listed = _listed()
    assert on_disk - listed == set(), "modules missing from the README's layout"
    assert listed - on_disk == set(), "the README's layout names modules that do not exist"


def test_every_tool_has_its_line():
    """tools/ holds what the README tells people to run (make demo, make sandbox): each
    script is named in the layout, so a reader finds what a make target runs."""
    text = (REPO / "README.md").read_text().split("## How it is built", 1)[1].split("```", 2)[1]
    missing = sorted(p.name for p in (REPO / "tools").glob("*.py") if f"tools/{p.name}" not in text)
    assert not missing, f"tools missing from the README's layout: {missing}"
