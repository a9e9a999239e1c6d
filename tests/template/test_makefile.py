"""The Makefile's targets do what they say: each one declared .PHONY runs something
(make -n: print the commands, run none), and `make test-fast` runs the tests that need
no servers."""

from __future__ import annotations

import re
import subprocess

import pytest

from .cfn import REPO


def phony_targets() -> list[str]:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    return sorted({name for line in re.findall(r"^\.PHONY:(.*)$", text, re.M) for name in line.split()})


def dry_run(target: str) -> str:
    result = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"make -n {target}: {result.stderr}"
    return result.stdout + result.stderr


def test_the_makefile_declares_its_targets_phony():
    assert {"test", "test-fast", "demo", "bench"} <= set(phony_targets())


@pytest.mark.parametrize("target", phony_targets())
def test_every_phony_target_has_something_to_do(target):
    """A target declared .PHONY with neither a recipe nor prerequisites does nothing
    and exits 0: a caller (CI, a person) believes it ran."""
    assert "Nothing to be done" not in dry_run(target)


def test_test_fast_runs_the_unit_protocol_and_template_tests_but_not_the_servers():
    pytest_lines = [line for line in dry_run("test-fast").splitlines() if "-m pytest" in line]
    assert len(pytest_lines) == 1, pytest_lines
    command = pytest_lines[0].split()
    for folder in ("tests/unit", "tests/protocol", "tests/template"):
        assert folder in command
    assert "tests/integration" not in command and "tests/e2e" not in command
    assert "--ignore=tests/template/test_sam.py" in command  # sam build: minutes


@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_the_test_targets_run_ruff_and_mypy_before_pytest(target):
    """A lint failure fails `make test` and `make test-fast` before minutes of tests."""
    lines = dry_run(target).splitlines()

    def first(tool: str) -> int:
        found = [n for n, line in enumerate(lines) if f"-m {tool}" in line]
        assert found, f"make {target} does not run {tool}"
        return found[0]

    assert first("ruff") < first("pytest") and first("mypy") < first("pytest")
    assert "ruff check src testing tests bench tools" in lines[first("ruff")]
