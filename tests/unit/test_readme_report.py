"""What the README says about the report, the requests it counts and the configs it
shows is what the code does: a reader scripting against `copy --json` must not meet a
status or a request kind the README never mentioned (`rejected`, `referrers` and the
mount kinds were left out once), and a config copied from the README must load."""

from __future__ import annotations

import re
from pathlib import Path

from ecr_mirror.copy.report import Status
from ecr_mirror.jsonkeys import camel
from ecr_mirror.sync.config import load_config

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


def readme_configs() -> list[str]:
    """The README's ```yaml blocks that are mirror configs (or their `defaults`)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), re.M | re.S)
    return [b if "images:" in b else b + "images: []\n" for b in blocks
            if re.search(r"^(images|defaults|registries):", b, re.M)]


def test_every_config_the_readme_shows_loads_without_an_error():
    """A reader copies these into their config: each must load, every entry valid."""
    configs = readme_configs()
    assert len(configs) >= 4
    for text in configs:
        config = load_config(text, origin="README.md")
        assert config.errors == [], f"{config.errors} in\n{text}"
        assert config.images or "images: []" in text
