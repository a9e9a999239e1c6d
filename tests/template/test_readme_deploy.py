"""What the README's deploy and operate sections promise about the stack holds: the
stack outputs it tells people to paste are outputs the template has, spelled as
CloudFormation shows them, and samconfig.toml, where the README says the parameters'
defaults are, holds every parameter with the template's default."""

from __future__ import annotations

import re
import tomllib

from .cfn import REPO, load_template

README = REPO / "README.md"


def sh_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.M | re.S)


def test_every_stack_output_the_readme_names_is_the_templates():
    """`--source-arn <DeadLetterQueue ARN>` sends a reader looking for an output that
    does not exist: a placeholder in a command must be an output's exact name, and so
    must every "output `X`" / "`X` output" of the prose."""
    outputs = set(load_template()["Outputs"])
    placeholders = {p for block in sh_blocks() for p in re.findall(r"<([^<>]*[A-Z][a-z]+[A-Z][^<>]*)>", block)}
    text = " ".join(README.read_text().split())
    named = set(re.findall(r"\boutputs? `(\w+)`", text)) | set(re.findall(r"`(\w+)` output\b", text))
    assert placeholders and named, (placeholders, named)
    unknown = sorted((placeholders | named) - outputs)
    assert not unknown, f"the README names stack outputs the template lacks: {unknown}"


def deploy_overrides() -> dict[str, str]:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    items = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    return dict(re.fullmatch(r'(\w+)="(.*)"', item).groups() for item in items)  # type: ignore[union-attr]


def test_samconfig_repeats_every_parameter_with_the_templates_default():
    """The README: "Parameters (defaults in `samconfig.toml`)"; samconfig.toml: "They
    repeat template.yaml's defaults: edit them here for your account". A parameter left
    out cannot be edited there, and `sam deploy --guided` does not offer it."""
    overrides = deploy_overrides()
    parameters = load_template()["Parameters"]
    assert sorted(set(parameters) - set(overrides)) == [], "samconfig.toml's deploy overrides lack these"
    differ = {name: (value, str(parameters[name].get("Default")))
              for name, value in overrides.items() if value != str(parameters[name].get("Default", ""))}
    assert differ == {}, "samconfig.toml's deploy overrides differ from the template's defaults"


def parameter_rows() -> list[tuple[list[str], list[str]]]:
    """([names], [defaults]) of each row of the README's parameter table."""
    lines = README.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| parameter | default |")))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = line.split("|")
        rows.append((re.findall(r"`(\w+)`", cells[1]), [d.strip() for d in cells[2].split(",")]))
    return rows


def test_the_parameter_tables_defaults_are_the_templates():
    """test_readme_tables.py holds the names to the template; this, the defaults."""
    parameters = load_template()["Parameters"]
    wrong = {}
    for names, defaults in parameter_rows():
        for name, shown in zip(names, defaults, strict=True):
            default = str(parameters[name].get("Default", ""))
            if shown.strip("`") != default and not (default == "" and shown in ("empty", "(empty)")):
                wrong[name] = (shown, default)
    assert wrong == {}, "README's parameter table shows other defaults than template.yaml (shown, real)"
