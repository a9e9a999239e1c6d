"""The README's paragraph on the report names every status a report can have: a
reader scripting against `copy --json` must not meet a status the README never
mentioned (`rejected` was left out once)."""

from __future__ import annotations

from pathlib import Path

from ecr_mirror.copy.report import Status

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_report_paragraph_names_every_status():
    text = README.read_text()
    paragraph = text.split("**The report**", 1)[1].split("\n\n", 1)[0]
    missing = [s.value for s in Status if f"`{s.value}`" not in paragraph]
    assert not missing, f"README's report paragraph lacks the statuses {missing}"
