"""Integration fixtures: the real distribution registry behind a counting
proxy as the source, and moto's ECR with ECR's rules enforced as the target.

The ECR emulator runs in moto's server mode, so botocore really serialises the
base64 part bodies over HTTP, as it does against AWS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import boto3
import pytest
import requests

from ecr_mirror import aws
from ecr_mirror.copy import CopyReport
from ecr_mirror.ecr import RepositorySettings
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.ecr_server import start_server
from ecr_mirror_testing.proxy import SourceProxy
from ecr_mirror_testing.registry import LocalRegistry
from ecr_mirror_testing.retry import FAST_RETRY

MiB = 1 << 20


@pytest.fixture(scope="session")
def registry():
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture
def source(registry):
    """The registry as clients see it: through a proxy that counts and can drop."""
    with SourceProxy(registry.url) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def ecr_endpoint():
    server, url = start_server()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch, ecr_endpoint):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL_ECR": ecr_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("ECR_MIRROR_SOURCE_SECRET_ARN", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-docker-config")


@pytest.fixture
def ecr(aws_env, ecr_endpoint, monkeypatch):
    """A fresh strict ECR with 5 MiB parts, so multi-part layers stay small."""
    requests.post(f"{ecr_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    strict_ecr.reset_calls()
    monkeypatch.setenv(strict_ecr.PART_SIZE_ENV, str(5 * MiB))
    return aws.client("ecr", "us-east-1")


@pytest.fixture
def repo_name():
    return f"it/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def copy(source, ecr) -> Callable[..., CopyReport]:
    """Run the real engine: copy(source_ref_path, target, **opts) -> report."""
    return copier(source, ecr)


def copier(source, ecr) -> Callable[..., CopyReport]:
    """The engine copying from `source` (a proxy) into `ecr`: run(path, target, **opts)."""

    def run(path: str, target: str | None = None, *, platforms=(), concurrency: int = 4,
            repository: RepositorySettings | None = None, referrers=None,
            time_left: Callable[[], float] | None = None) -> CopyReport:
        from ecr_mirror.mirror import parse_platforms

        settings = MirrorSettings(prefix="mirror", concurrency=concurrency, retry=FAST_RETRY,
                                  registries={source.host: SourceRegistry(insecure=True)},
                                  repository=repository or RepositorySettings(),
                                  region="us-east-1")
        with Mirror(settings, ecr_client=ecr) as mirror:  # its connections closed: none left per copy
            return mirror.copy(f"{source.host}/{path}", target, platforms=parse_platforms(platforms),
                               referrers=referrers, time_left=time_left)

    return run


def ecr_image(ecr, repository: str, *, tag: str | None = None, digest: str | None = None) -> dict:
    image_id = {"imageTag": tag} if tag else {"imageDigest": digest}
    answer = ecr.batch_get_image(repositoryName=repository, imageIds=[image_id],
                                 acceptedMediaTypes=[
                                     "application/vnd.oci.image.index.v1+json",
                                     "application/vnd.docker.distribution.manifest.list.v2+json",
                                     "application/vnd.oci.image.manifest.v1+json",
                                     "application/vnd.docker.distribution.manifest.v2+json"])
    assert not answer["failures"], answer["failures"]
    return answer["images"][0]


def tags_in_ecr(ecr, repository: str) -> dict[str, str]:
    """Tag → digest of every tag in an ECR repository ({} when it does not exist)."""
    try:
        pages = ecr.get_paginator("describe_images").paginate(repositoryName=repository)
        return {t: i["imageDigest"] for page in pages for i in page["imageDetails"]
                for t in i.get("imageTags", [])}
    except ecr.exceptions.RepositoryNotFoundException:
        return {}


def create_lease_table(name: str, client=None) -> dict:
    """The template's LeaseTable (key `lease`, on demand) in the emulator; its description."""
    client = client or boto3.client("dynamodb")
    return client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "lease", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "lease", "KeyType": "HASH"}])["TableDescription"]


@pytest.fixture(autouse=True)
def _outputs_match_the_schema(monkeypatch):
    """Every JSON object the CLI prints and every handler answer a test causes, in
    this process, is checked against docs/schema/output.schema.json."""
    from ecr_mirror_testing.outputs import check_outputs

    check_outputs(monkeypatch)
