"""What README.md and bench/README.md tell people to run exists as they spell it
(issue 14's end-to-end read of the READMEs). test_readme_examples.py runs the
`ecr-mirror ...` lines and test_readme_tables.py checks the flag and parameter tables;
this covers the rest of what a reader types: `make TARGET VAR=value`, the
`ECR_MIRROR_*` variables, and the bench and tools scripts with their flags. And the
Makefile's own prerequisite checks cover every target that needs what they check."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from .cfn import REPO

READMES = [REPO / "README.md", REPO / "bench" / "README.md"]
MAKEFILE = REPO / "Makefile"


def code_in(text: str) -> list[str]:
    """Every fenced block and every inline code span, whitespace (a span broken over two
    lines) made one space."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    spans = re.findall(r"`([^`]+)`", prose)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()] + \
        [" ".join(span.split()) for span in spans]


def readme_code() -> list[tuple[str, str]]:
    return [(readme.relative_to(REPO).as_posix(), code) for readme in READMES
            for code in code_in(readme.read_text())]


def make_commands() -> list[tuple[str, str, list[str]]]:
    """(README, target, ["VAR=value", ...]) of each `make TARGET ...` in code."""
    found = []
    for where, code in readme_code():
        for match in re.finditer(r"(?:^|[;&|(]\s*|\s)make((?:\s+[A-Za-z][\w-]*(?:=\S*)?)+)", code):
            words = shlex.split(match.group(1), comments=True)
            targets = [w for w in words if "=" not in w]
            if targets:
                found.append((where, targets[0], [w for w in words if "=" in w]))
    return found


def makefile_rules() -> dict[str, list[str]]:
    """Target -> its prerequisites, as written (variables left unexpanded)."""
    rules: dict[str, list[str]] = {}
    text = MAKEFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        m = re.match(r"^([^\t#=:\s][^:=]*?)\s*::?(?!=)(.*)$", line)
        if m and not m.group(1).startswith("."):
            for target in m.group(1).split():
                rules.setdefault(target, []).extend(m.group(2).replace("|", " ").split())
    return rules


def make_dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_the_readmes_name_make_targets():
    assert {"demo", "test", "deploy", "bench"} <= {target for _, target, _ in make_commands()}


@pytest.mark.parametrize("where,target", sorted({(w, t) for w, t, _ in make_commands()}))
def test_every_make_target_the_readmes_name_is_the_makefiles(where, target):
    assert target in makefile_rules(), f"{where} tells people to run `make {target}`: no such target"


@pytest.mark.parametrize("where,target,assignments",
                         [c for c in make_commands() if c[2]], ids=lambda v: str(v))
def test_a_variable_the_readmes_give_make_reaches_a_command(where, target, assignments):
    """`make bench BENCH_ARGS=--publish` must pass --publish on; a variable the target
    ignores (say BENCH_ARGS on bench-layer) would be dropped without a word."""
    for assignment in assignments:
        name = assignment.split("=", 1)[0]
        marker = "/readme-check-" + name.lower()
        result = make_dry_run(target, f"{name}={marker}")
        assert result.returncode == 0, result.stderr
        assert marker in result.stdout, f"{where}: `make {target} {assignment}`: make ignores {name}"


def test_every_ecr_mirror_variable_the_readmes_name_is_read_by_the_code():
    """By src/ecr_mirror, or for the live test's own (ECR_MIRROR_LIVE_*) by tests/e2e."""
    named = {v for _, code in readme_code() for v in re.findall(r"\bECR_MIRROR_[A-Z0-9_]*[A-Z0-9]\b", code)}
    assert len(named) > 5, named
    source = "\n".join(p.read_text() for p in (REPO / "src" / "ecr_mirror").rglob("*.py"))
    live = "\n".join(p.read_text() for p in (REPO / "tests" / "e2e").rglob("*.py"))
    unread = sorted(v for v in named if f'"{v}"' not in (live if v.startswith("ECR_MIRROR_LIVE_") else source))
    assert not unread, f"the READMEs name variables nothing reads: {unread}"


def script_commands() -> list[tuple[str, str, list[str]]]:
    """(README, script, [--flag, ...]) of each `.venv/bin/python path/x.py ...` and
    `python -m ecr_mirror_testing.x ...` in code."""
    found = []
    for where, code in readme_code():
        for match in re.finditer(r"python3?\s+(-m\s+[\w.]+|[\w/.-]+\.py)([^;&|#]*)", code):
            script = match.group(1)
            if script.startswith("-m"):
                module = script.split()[1]
                package = module.split(".")[0]
                script = f"testing/{package}/{module.split('.', 1)[1].replace('.', '/')}.py" \
                    if package == "ecr_mirror_testing" else ""
            if script:
                flags = re.findall(r"(?<!\S)(--[a-z][\w-]*)", match.group(2))
                found.append((where, script, flags))
    return found


def test_the_readmes_name_scripts():
    assert {"bench/sync_bench.py", "bench/scale.py", "tools/sandbox.py"} <= {s for _, s, _ in script_commands()}


@pytest.mark.parametrize("where,script,flags", script_commands(), ids=lambda v: str(v))
def test_every_script_the_readmes_run_exists_with_those_flags(where, script, flags):
    path = REPO / script
    assert path.is_file(), f"{where} runs {script}: no such file"
    source = path.read_text()
    unknown = [flag for flag in flags if not re.search(rf"""add_argument\(\s*["']{flag}["']""", source)]
    assert not unknown, f"{where} runs {script} with flags its parser lacks: {unknown}"


def depends_on(rules: dict[str, list[str]], target: str, wanted: str, seen: frozenset = frozenset()) -> bool:
    prerequisites = rules.get(target, [])
    return wanted in prerequisites or any(
        depends_on(rules, p, wanted, seen | {target}) for p in prerequisites if p not in seen)


def checked_goals(check: str) -> set[str]:
    """The goals for which SETUP_CHECKS adds `check`: $(if $(filter GOALS,$(MAKECMDGOALS)),check)."""
    text = MAKEFILE.read_text().replace("\\\n", " ")
    [goals] = re.findall(rf"\$\(if \$\(filter ([^,]+),\$\(MAKECMDGOALS\)\),{check}\)", text)
    return set(goals.split())


@pytest.mark.parametrize("check,needs", [("apt-check", "registry"), ("python313", "python313")])
def test_the_setup_checks_cover_every_target_that_needs_what_they_check(check, needs):
    """`make bench-scale` on a machine without docker-registry and without sudo must say so
    up front (apt-check), not fail in apt-get after pip installed the venv."""
    rules = makefile_rules()
    needing = {t for t in rules if depends_on(rules, t, needs) and not t.startswith(("build-", "$"))}
    needing -= {check, "setup-check"}
    assert needing, f"nothing depends on {needs}?"
    unchecked = sorted(needing - checked_goals(check))
    assert not unchecked, f"targets needing {needs} that SETUP_CHECKS does not run {check} for: {unchecked}"


def setup_row(label: str) -> set[str]:
    """The make targets the README's set-up table names in the row starting `| label`."""
    [row] = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| {label}")]
    return set(re.findall(r"`make ([\w-]+)`", row.split("|")[1] + row.split("|")[2]))


@pytest.mark.parametrize("label,check", [("Python 3.13", "python313"), ("root or `sudo`", "apt-check")])
def test_the_set_up_table_names_the_targets_the_makefile_checks_for(label, check):
    """The README's prerequisites and `make`'s own check say the same: a target the check
    runs for is named in the README's row, and a target the row names is checked."""
    assert setup_row(label) == checked_goals(check), f"README's {label!r} row and SETUP_CHECKS' {check} differ"


def named_paths() -> set[tuple[str, str]]:
    """(README, path) of every repository path the READMEs name: code, prose, links."""
    top = "docs|tests|testing|bench|tools|examples|events|src|layers"
    found = set()
    for readme in READMES:
        for path in re.findall(rf"(?<![\w/.-])((?:{top})/[\w./*-]*\w)", readme.read_text()):
            found.add((readme.relative_to(REPO).as_posix(), path))
    return found


def test_every_path_the_readmes_name_is_in_the_repository():
    """A reader follows `(docs/...)` or `tests/integration/test_x.py` to read more: the file
    must be in the clone (a note kept outside the repository helps no reader)."""
    paths = named_paths()
    assert len(paths) > 20
    relative = {readme: (REPO / readme).parent for readme, _ in paths}
    missing = sorted(f"{readme}: {path}" for readme, path in paths
                     if not any(REPO.glob(path)) and not any(relative[readme].glob(path))
                     and not path.startswith("bench/results"))  # git-ignored output
    assert not missing, f"the READMEs name paths the repository lacks: {missing}"
