"""A newcomer's set-up mistakes, through the CLI in a subprocess (issue 11): each is
ONE line naming the cause and the fix, never a traceback, soon; exit 2 when the
user's input or set-up is wrong (credentials, a platform the image lacks), exit 1
when the copy failed (an unreachable endpoint)."""

from __future__ import annotations

import re
import uuid

import pytest

from ecr_mirror_testing.images import layer_bytes, make_image, make_index
from ecr_mirror_testing.registry import free_port
from tests.integration.test_cli_errors import one_line_usage_error, run_cli

pytestmark = pytest.mark.integration

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def image(registry) -> str:
    """A small image in the local (plain-HTTP) registry, as `host/repo:tag`."""
    repo = f"setup/{uuid.uuid4().hex[:8]}"
    make_image(registry.url, repo, "1", layers=[layer_bytes(repo)])
    return f"{registry.host}/{repo}:1"


def retry_waits(result) -> list[float]:
    """The waits a verbose run announced, one per retry of a registry request
    (registry/retry.py logs each: "retrying: <error>; try N of M in W s")."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    return [float(m) for m in re.findall(r"retrying: .*?; try \d+ of \d+ in ([\d.]+) s", result.stderr)]


def one_failed_line(result, *needles: str) -> str:
    """Exit 1, no traceback, and one line of output in all naming every needle."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_no_aws_credentials_is_one_line_and_exit_2(image, ecr_endpoint):
    result = run_cli("copy", image, "mirror/x", "--insecure", env={
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint,
        "AWS_EC2_METADATA_DISABLED": "true"})
    one_line_usage_error(result, "no AWS credentials")
    assert "AWS_ACCESS_KEY_ID" in result.stderr


def test_aws_region_alone_is_honoured(image, ecr, ecr_endpoint):
    """AWS_REGION (what the README, Lambda and the other SDKs name), no AWS_DEFAULT_REGION."""
    result = run_cli("copy", image, "mirror/region", "--insecure", env={
        **KEYS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("copied ")


@pytest.mark.parametrize("endpoint,cause", [
    (f"http://127.0.0.1:{free_port()}", "Could not connect"),
    ("http://ecr.nonexistent.invalid", "Could not connect"),
])
def test_an_unreachable_ecr_fails_fast_in_one_line(image, ecr_endpoint, endpoint, cause):
    env = {**KEYS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": endpoint}
    one_failed_line(run_cli("copy", image, "mirror/x", "--insecure", env=env), cause, "AWS_ENDPOINT_URL_ECR")
    # Fast, counted rather than timed: one retry of one ECR call, announced by -v (it was
    # botocore's 9 retries per call and our own on top, 16-20 s of silence; 29 s against AWS).
    result = run_cli("copy", image, "mirror/x", "--insecure", "-v", env=env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    waits = [float(w) for w in re.findall(r"Retry needed, retrying request after delay of: ([\d.]+)",
                                           result.stderr)]
    assert len(waits) == 1 and waits[0] < 2, result.stderr


@pytest.mark.parametrize("host,cause", [
    (f"127.0.0.1:{free_port()}", "connection refused"),
    ("registry.nonexistent.invalid", "cannot resolve"),
])
def test_an_unreachable_registry_fails_fast_in_one_line(ecr_endpoint, host, cause):
    env = {**KEYS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint}
    line = one_failed_line(run_cli("copy", f"{host}/x:1", "mirror/x", env=env), cause, host.split(":")[0])
    assert "Max retries" not in line and "Guarded" not in line, line
    # Fast, counted rather than timed: one retry at most, after a short wait (it was
    # four retries, 9-12 s, before an unreachable host was given up early).
    waits = retry_waits(run_cli("copy", f"{host}/x:1", "mirror/x", "-v", env=env))
    assert len(waits) <= 1 and sum(waits) <= 2, waits


def test_tls_to_a_plain_http_registry_says_use_insecure_and_does_not_retry(image, ecr_endpoint):
    env = {**KEYS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint}
    one_failed_line(run_cli("copy", image, "mirror/x", env=env),
                    "use --insecure if this registry speaks plain HTTP")
    # A protocol error is not retried (it was: 9 s of retries), counted, not timed.
    assert retry_waits(run_cli("copy", image, "mirror/x", "-v", env=env)) == []


def test_a_platform_the_image_lacks_is_a_usage_error(registry, ecr, ecr_endpoint):
    repo = f"setup/{uuid.uuid4().hex[:8]}"
    make_index(registry.url, repo, "1", platforms=[("linux", "amd64", None)], attestations=False)
    result = run_cli("copy", f"{registry.host}/{repo}:1", "mirror/x", "--insecure",
                     "--platform", "linux/s390x", env={
                         **KEYS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint})
    one_line_usage_error(result, "linux/s390x")


def test_version_is_answered():
    from ecr_mirror import __version__

    result = run_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"ecr-mirror {__version__}\n", "")


def test_a_present_image_copied_to_a_new_tag_says_retagged(image, ecr, ecr_endpoint):
    env = {**KEYS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint}
    first = run_cli("copy", image, "mirror/re:a", "--insecure", env=env)
    assert first.returncode == 0 and first.stdout.startswith("copied "), first.stdout
    again = run_cli("copy", image, "mirror/re:b", "--insecure", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith(f"retagged {image} -> mirror/re:b sha256:"), again.stdout
    assert "nothing uploaded" in again.stdout and "0 B" not in again.stdout


def test_sync_without_aws_credentials_says_so_once_and_exits_2(registry, tmp_path):
    """The README's dry run with no credentials: one line, not one per image."""
    config = tmp_path / "mirror.yaml"
    config.write_text(f"registries:\n  {registry.host}: {{credentials: ecr-mirror/src, insecure: true}}\n"
                      f"images:\n  - source: {registry.host}/a\n    tags: ['1']\n"
                      f"  - source: {registry.host}/b\n    tags: ['1']\n")
    env = {"AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    one_line_usage_error(run_cli("sync", "--config", str(config), "--dry-run", env=env), "no AWS credentials")
    # Soon, counted rather than timed: nothing is retried on the way to that line.
    verbose = run_cli("sync", "--config", str(config), "--dry-run", "-v", env=env)
    assert verbose.returncode == 2 and "no AWS credentials" in verbose.stderr, verbose.stderr
    assert "retrying" not in verbose.stderr.lower() and "Retry needed" not in verbose.stderr, verbose.stderr
