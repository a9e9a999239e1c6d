"""The README's tables are complete and true, both ways (issue 11): every flag the
CLI's parser has is in its command's flag table and every flag a table lists is
the parser's; every parameter of template.yaml is in the parameter table and
every parameter the table lists is the template's."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ecr_mirror.cli import build_parser

from .cfn import load_template

README = Path(__file__).resolve().parents[2] / "README.md"


def table_after(marker: str) -> list[str]:
    """The first column of the first Markdown table after the line holding `marker`."""
    rows = [row.split("|")[1] for row in table_rows_after(marker)]
    assert rows, f"no table after {marker!r} in README.md"
    return [row for row in rows if not set(row.strip()) <= {"-", ":"}]


def names(cells: list[str]) -> set[str]:
    """`--platform OS/ARCH`, `-v`, `--verbose` -> {"--platform", "-v", "--verbose"}."""
    return {code.split()[0] for cell in cells for code in re.findall(r"`([^`]+)`", cell)}


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def parser_names(parser: argparse.ArgumentParser) -> list[set[str]]:
    """Each action's names (its option strings, or a positional's metavar), but -h."""
    return [set(a.option_strings) or {a.metavar or a.dest} for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.mark.parametrize("command,marker", [("copy", "`ecr-mirror copy SOURCE TARGET`"),
                                            ("sync", "`ecr-mirror sync --config FILE`")])
def test_each_flag_table_lists_exactly_the_parsers_flags(command, marker):
    documented = names(table_after(marker))
    actions = parser_names(subcommand(command))
    missing = [sorted(a) for a in actions if not a & documented]
    assert not missing, f"README's {command} table lacks {missing}"
    unknown = documented - set().union(*actions)
    assert not unknown, f"README's {command} table lists flags the parser lacks: {unknown}"


def test_the_top_level_flags_are_documented():
    top = parser_names(build_parser())
    text = README.read_text()
    assert all(any(f"`ecr-mirror {name}`" in text for name in action) for action in top), top


def test_the_parameter_table_lists_exactly_the_templates_parameters():
    documented = names(table_after("| parameter | default |"))
    parameters = set(load_template()["Parameters"])
    assert parameters - documented == set(), "README's parameter table lacks these"
    assert documented - parameters == set(), "README's parameter table lists unknown parameters"



@pytest.mark.parametrize("command,marker", [("copy", "`ecr-mirror copy SOURCE TARGET`"),
                                            ("sync", "`ecr-mirror sync --config FILE`")])
def test_each_default_a_flag_table_states_is_the_parsers(command, marker):
    """`--concurrency N | ... (default 4)`: the number the parser really defaults to."""
    defaults = {option: action.default for action in subcommand(command)._actions
                for option in action.option_strings}
    stated = {}
    for row in table_rows_after(marker):
        found = re.search(r"\(default (\d+)", row)
        if found:
            [flag] = names([row.split("|")[1]])
            stated[flag] = int(found.group(1))
    assert stated, f"no default stated in the {command} table"
    wrong = {flag: (value, defaults[flag]) for flag, value in stated.items() if defaults[flag] != value}
    assert wrong == {}, "README states other defaults than the parser's (stated, real)"


def table_rows_after(marker: str) -> list[str]:
    """The whole rows of the first Markdown table after the line holding `marker`."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    rows: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return rows
