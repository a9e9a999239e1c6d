"""The CLI reaches a registry where ECR_MIRROR_REGISTRY_ENDPOINTS says, and treats the
hosts of ECR_MIRROR_INSECURE_REGISTRIES as insecure, as the Lambda functions do; the flags
--registry-endpoint and --insecure-registry say the same on the command line (issue 11,
item 5). Before, the CLI ignored both variables: `ecr-mirror copy alpine:3.20 ...` went to
the real Docker Hub."""

from __future__ import annotations

import pytest

from ecr_mirror_testing import images

from .conftest import ecr_image
from .test_cli_errors import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_image(registry):
    """`alpine:3.20` as Docker Hub would name it, in the local registry."""
    return images.make_image(registry.url, "library/alpine", "3.20",
                             layers=[images.layer_bytes("alpine 3.20 for the CLI settings test")])


@pytest.fixture
def cli_env(ecr, ecr_endpoint):
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint}


def test_the_environment_sends_docker_hub_names_to_the_endpoint(registry, hub_image, ecr, cli_env):
    result = run_cli("copy", "alpine:3.20", "mirror/alpine", env={
        **cli_env, "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={registry.url}"})
    assert result.returncode == 0, result.stderr + result.stdout
    assert ecr_image(ecr, "mirror/alpine", tag="3.20")["imageId"]["imageDigest"] == hub_image.digest


def test_the_flags_say_the_same(registry, hub_image, ecr, cli_env):
    result = run_cli("copy", "--registry-endpoint", f"docker.io={registry.url}",
                     "alpine:3.20", "mirror/alpine:flag", env=cli_env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert ecr_image(ecr, "mirror/alpine", tag="flag")["imageId"]["imageDigest"] == hub_image.digest


def test_an_insecure_registry_from_the_environment_or_a_flag_is_reached_over_http(
        registry, hub_image, ecr, cli_env):
    """A registry named by its own host:port, plain HTTP: refused without a word that it is
    insecure, copied with ECR_MIRROR_INSECURE_REGISTRIES or --insecure-registry."""
    source = f"{registry.host}/library/alpine:3.20"
    refused = run_cli("copy", source, "mirror/alpine:refused", env=cli_env)
    assert refused.returncode == 1
    by_env = run_cli("copy", source, "mirror/alpine:env",
                     env={**cli_env, "ECR_MIRROR_INSECURE_REGISTRIES": f"other.example,{registry.host}"})
    assert by_env.returncode == 0, by_env.stderr + by_env.stdout
    by_flag = run_cli("copy", "--insecure-registry", registry.host, source, "mirror/alpine:flag2",
                      env=cli_env)
    assert by_flag.returncode == 0, by_flag.stderr + by_flag.stdout
    for tag in ("env", "flag2"):
        assert ecr_image(ecr, "mirror/alpine", tag=tag)["imageId"]["imageDigest"] == hub_image.digest


def test_a_malformed_endpoint_flag_is_one_usage_line(cli_env):
    result = run_cli("copy", "--registry-endpoint", "docker.io=ftp://x", "alpine:3.20", "mirror/a",
                     env=cli_env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "--registry-endpoint" in line and "docker.io=ftp://x" in line
