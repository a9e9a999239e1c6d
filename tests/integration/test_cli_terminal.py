"""What a person sees of retries (issue 11): `-v` logs each retry with its cause and
its wait; without `-v`, a wait longer than 5 s is announced in one line on a
terminal, under the progress bars. The terminal is a real one: tmux."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from ecr_mirror_testing.images import layer_bytes, make_image
from tests.integration.test_cli_errors import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def image(registry, source) -> str:
    """A small image, as the CLI sees it: through the fault-injecting proxy."""
    repo = f"term/{uuid.uuid4().hex[:8]}"
    make_image(registry.url, repo, "1", layers=[layer_bytes(repo, 2 << 20)])
    return f"{source.host}/{repo}:1"


def cli_env(ecr_endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint}


def test_verbose_logs_each_retry_with_its_cause_and_wait(image, source, ecr, ecr_endpoint):
    source.fail("GET manifest", 503, times=2, headers={"Retry-After": "0"})
    result = run_cli("copy", image, "mirror/term", "--insecure", "-v", env=cli_env(ecr_endpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    retries = [line for line in result.stderr.splitlines() if "retry" in line]
    assert len(retries) == 2, result.stderr
    for number, line in enumerate(retries, 1):
        assert "HTTP 503" in line and "in 0.0 s" in line and f"try {number + 1} of" in line, line


def test_without_verbose_a_short_wait_is_not_announced(image, source, ecr, ecr_endpoint):
    source.fail("GET manifest", 503, times=1, headers={"Retry-After": "0"})
    result = run_cli("copy", image, "mirror/term", "--insecure", env=cli_env(ecr_endpoint))
    assert result.returncode == 0 and result.stderr == "", result.stderr


class Tmux:
    """One detached tmux session running a command; its screen read as a person would."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.name = f"ecrm-{uuid.uuid4().hex[:8]}"
        self.env = env
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        subprocess.run(["tmux", "-L", self.name, "new-session", "-d", "-s", self.name, "-x", "200",
                        "-y", "40", f"env -i {exports} {command}; echo EXIT=$?; sleep 600"],
                       check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-L", self.name, "capture-pane", "-p", "-J", "-t", self.name],
                              capture_output=True, text=True, check=True).stdout

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True)


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
def test_a_long_wait_is_announced_on_a_terminal_under_the_bars(image, source, ecr, ecr_endpoint):
    source.fail("GET blob", 503, times=1, headers={"Retry-After": "6"})
    env = {**cli_env(ecr_endpoint), "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "TERM": "xterm",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "DOCKER_CONFIG": "/nonexistent"}
    tmux = Tmux(f"{shlex.quote(sys.executable)} -m ecr_mirror.cli copy {image} mirror/term "
                "--insecure", env)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seen.append(tmux.screen())
            if "EXIT=" in seen[-1]:
                break
            time.sleep(0.2)  # polling the screen, not a timing assertion
    finally:
        tmux.close()
    final = seen[-1]
    assert "EXIT=0" in final and "copied " in final, final
    announced = [s for s in seen if "waiting 6 s" in s]
    assert announced, final
    assert "HTTP 503" in announced[0]
    # the bar of the blob being waited for is on screen with the announcement
    assert any("B/" in s and "%" in s and "waiting 6 s" in s for s in seen), announced[0]
    assert "Traceback" not in "".join(seen)
