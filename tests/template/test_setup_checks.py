"""`make test` on a machine that lacks a prerequisite stops at once, before it installs
anything, and says what is missing and how to install it (issue 11, item 1).

Each test runs the real Makefile in a subprocess with an environment that lacks one
prerequisite: a PATH with no python3.13 and an empty pyenv, or a python3 whose venv
cannot work (Debian without python3-venv). VENV and SAM_VENV point into tmp_path, so
whatever make would install is seen there and this checkout's venvs are left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .cfn import REPO


def base_python() -> str:
    """A Python >= 3.11 that is not 3.13 and has a working venv (the tests' own interpreter's base)."""
    return os.path.realpath(sys._base_executable)


def python313_dir() -> str | None:
    """The directory of a working python3.13 (pyenv's or on PATH), as the Makefile finds one."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv.glob("versions/3.13*/bin/python3.13"))
    candidates += [Path(p) for p in filter(None, [shutil.which("python3.13")])]
    for candidate in candidates:
        if subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"],
                          capture_output=True).returncode == 0:
            return str(candidate.parent)
    return None


def make_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A PATH with make, coreutils and a python3 (3.11), but no python3.13 anywhere."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").symlink_to(base_python())
    system = [d for d in ("/usr/local/bin", "/usr/bin", "/bin")
              if not any(Path(d, name).exists() for name in ("python3.13",))]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYENV", "PY313", "MAKE", "VIRTUAL_ENV")) and k != "PYTHONPATH"}
    env.update(PATH=os.pathsep.join([str(bin_dir), *system]), HOME=str(home),
               PYENV_ROOT=str(tmp_path / "no-pyenv"), **extra)
    return env


def run_make(tmp_path: Path, target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    venvs = [f"VENV={tmp_path / 'venv'}", f"SAM_VENV={tmp_path / 'venv-sam'}"]
    return subprocess.run(["make", "--no-print-directory", target, *venvs], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_nothing_installed(tmp_path: Path) -> None:
    """The issue's promise, "at once, not after minutes of pip", checked by what was
    done rather than by the clock: no venv (so no pip) before the message."""
    assert not (tmp_path / "venv").exists(), "make created the venv before failing"
    assert not (tmp_path / "venv-sam").exists(), "make created the sam venv before failing"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_test_without_python313_stops_at_once_and_says_how_to_install_it(tmp_path):
    result = run_make(tmp_path, "test", make_env(tmp_path))
    assert result.returncode != 0, result.stdout
    assert_nothing_installed(tmp_path)
    message = result.stderr
    assert "python3.13" in message or "Python 3.13" in message
    assert "pyenv install 3.13" in message          # how to install it
    assert "PY313_BIN=" in message                  # or where to point make at one
    assert "no python3.13 package" in message       # why not apt-get
    assert "Traceback" not in message


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_test_with_python313_from_py313_bin_gets_past_the_check(tmp_path):
    """The check accepts the interpreter it names: PY313_BIN pointing at a real 3.13 (make -n)."""
    py313 = python313_dir()
    if py313 is None:
        pytest.skip("no python3.13 on this machine")
    env = make_env(tmp_path, PY313_BIN=py313)
    result = subprocess.run(["make", "-n", "test", f"VENV={tmp_path / 'venv'}",
                             f"SAM_VENV={tmp_path / 'venv-sam'}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "-m pytest" in result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("target", ["test", "test-fast", "demo"])
def test_make_without_a_working_venv_module_names_python3_venv(tmp_path, target):
    """Debian's python3 without the package python3-venv has no ensurepip: `python3 -m venv`
    fails. Simulated by shadowing ensurepip with a module that cannot be imported."""
    shadow = tmp_path / "shadow" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ensurepip')\n")
    extra = {"PYTHONPATH": str(shadow.parent)}
    py313 = python313_dir()
    if py313:  # so that only the venv is missing
        extra["PY313_BIN"] = py313
    result = run_make(tmp_path, target, make_env(tmp_path, **extra))
    assert result.returncode != 0, result.stdout
    assert_nothing_installed(tmp_path)
    assert "python3-venv" in result.stderr
    assert "apt-get install python3-venv" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_bench_without_skopeo_and_without_sudo_stops_at_once_and_names_it(tmp_path):
    """`make bench` installs skopeo with apt-get: as a user without sudo, a missing skopeo
    must be said up front, not after minutes of pip. A PATH of shims: python3, a
    docker-registry (present), an `id` that says uid 1000; no skopeo, no sudo."""
    env = make_env(tmp_path, PIP_NO_INDEX="1")  # were pip reached, it would fail fast, offline
    bin_dir = tmp_path / "bin"  # make_env's: python3 only
    for name, body in (("docker-registry", "exit 0"), ("id", "echo 1000")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env["PATH"] = str(bin_dir)
    result = subprocess.run([shutil.which("make"), "--no-print-directory", "bench",
                             f"VENV={tmp_path / 'venv'}", f"SAM_VENV={tmp_path / 'venv-sam'}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout
    assert_nothing_installed(tmp_path)
    assert "skopeo" in result.stderr and "apt-get install skopeo" in result.stderr, result.stderr
