"""The CLI as a user runs it, in a subprocess: every malformed config or usage
problem is exit 2 and ONE line on stderr, `ecr-mirror: error: ...`, never a
traceback; a copy that fails (a refused secret) is exit 1 and one report line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.aws_errors import FailingAws

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "ECR_MIRROR_")) and k != "DOCKER_CONFIG"}
    base.update({"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                 "DOCKER_CONFIG": "/nonexistent-docker-config", **(env or {})})
    return subprocess.run([sys.executable, "-m", "ecr_mirror.cli", *args], capture_output=True,
                          text=True, env=base, cwd=cwd, timeout=120)


def one_line_usage_error(result, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecr-mirror: error: "), result.stderr
    assert needle in lines[0], lines[0]


CONFIGS = {
    "nested.yaml": ("images: " + "[" * 1000).encode(),
    "bigint.yaml": ("images:\n  - source: nginx\n    latest: " + "9" * 5000 + "\n").encode(),
    "latin1.yaml": "images:\n  - source: caf\u00e9\n".encode("latin-1"),
    "utf16.yaml": "images: []\n".encode("utf-16"),
    "syntax.yaml": b"registries:\n  ? [a]\n  : {}\nimages: []\n",
    "scalar.yaml": b"just text\n",
    "prefix.yaml": b"defaults: {targetPrefix: Mirror}\nimages: []\n",
    "hosts.yaml": b"registries:\n  1: {}\nimages: []\n",
}


@pytest.mark.parametrize("name,needle", [
    ("nested.yaml", "nested"), ("bigint.yaml", "5000 digits"), ("latin1.yaml", "UTF-8"),
    ("utf16.yaml", "UTF-8"), ("syntax.yaml", "line 2"), ("scalar.yaml", "images"),
    ("prefix.yaml", "targetPrefix"), ("hosts.yaml", "registries"),
])
def test_a_malformed_config_is_one_line_and_exit_2(tmp_path, name, needle):
    path = tmp_path / name
    path.write_bytes(CONFIGS[name])
    result = run_cli("sync", "--config", str(path), "--dry-run")
    one_line_usage_error(result, needle)
    assert name in result.stderr


@pytest.mark.parametrize("args,needle", [
    (["copy", "nginx"], "TARGET"),
    (["copy", "a", "b", "--concurrency", "0"], "--concurrency"),
    (["nope"], "nope"),
    ([], "command"),
    (["sync"], "--config"),
    (["sync", "--config", "/"], "/"),
    (["copy", "Nginx:1", "mirror/x"], '"Nginx:1"'),
    (["copy", "nginx:1", "mirror/x\n:v1"], r'"mirror/x\n:v1"'),
    (["copy", "nginx:1", "mirror/x", "--platform", "linux"], '"linux"'),
    (["copy", "nginx:1", "mirror/x", "--region", "not a region!"], "region"),
])
def test_a_usage_problem_is_one_line_and_exit_2(args, needle):
    one_line_usage_error(run_cli(*args, env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}),
                         needle)


def test_no_region_is_one_line_saying_how_to_set_one():
    result = run_cli("copy", "localhost:1/x:1", "mirror/x",
                     env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    one_line_usage_error(result, "--region")


def test_a_refused_secret_is_one_failed_line_and_exit_1(ecr, ecr_endpoint):
    with FailingAws() as secrets:  # read before anything goes to Docker Hub
        result = run_cli("copy", "nginx:1", "mirror/x", env={
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": secrets.url,
            "ECR_MIRROR_SOURCE_SECRET_ARN": "ecr-mirror/dockerhub"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert secrets.calls == ["secretsmanager.GetSecretValue"]
    [line] = result.stdout.splitlines()
    assert line.startswith("FAILED ") and "SecretError" in line and "AccessDenied" in line
    assert sum(strict_ecr.calls.values()) == 0
