"""The README's paragraph on the report names every status a report can have: a
reader scripting against `copy --json` must not meet a status the README never
mentioned (`rejected` was left out once)."""

from __future__ import annotations

import re
from pathlib import Path

from ecr_mirror.copy.report import Status
from ecr_mirror.jsonkeys import camel

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_report_paragraph_names_every_status():
    text = README.read_text()
    paragraph = text.split("**The report**", 1)[1].split("\n\n", 1)[0]
    missing = [s.value for s in Status if f"`{s.value}`" not in paragraph]
    assert not missing, f"README's report paragraph lacks the statuses {missing}"


def counted_kinds() -> set[str]:
    """The request kinds the source client and the ECR target count, as a report spells
    them: every `kind="..."` and `count("...")` literal of registry/ and ecr/ (the
    `ecr:<Operation>` ones stand for themselves)."""
    package = README.parent / "src" / "ecr_mirror"
    source = "\n".join(p.read_text() for folder in ("registry", "ecr") for p in (package / folder).rglob("*.py"))
    kinds = set(re.findall(r"""(?:\bkind=|\.count\()\s*["']([^"']+)["']""", source))
    kinds |= set(re.findall(r"""\.count\([^)]*\belse\s+["']([^"']+)["']""", source))  # the redirect hop
    return {camel(k) for k in kinds if not k.startswith("ecr:")}


def test_the_rate_limit_section_names_every_request_kind_a_report_counts():
    kinds = counted_kinds()
    assert {"manifestGet", "manifestHead", "blobGet", "redirect"} <= kinds, kinds
    text = README.read_text()
    paragraph = text.split("Every report counts the requests by kind", 1)[1].split("\n\n", 1)[0]
    missing = sorted(k for k in kinds if f"`{k}`" not in paragraph)
    assert not missing, f"README's list of request kinds lacks {missing}"
