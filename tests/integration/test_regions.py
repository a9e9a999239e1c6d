"""One region for every AWS client: `--region` (else AWS_REGION, else
AWS_DEFAULT_REGION) reaches Secrets Manager as well as ECR."""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import cli
from ecr_mirror_testing.images import layer_bytes, make_image

pytestmark = pytest.mark.integration


@pytest.fixture
def everything_on_moto(monkeypatch, ecr, ecr_endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)  # secrets too, not only ECR


def test_sync_with_region_reads_its_secret_in_that_region(everything_on_moto, source, registry,
                                                           ecr, repo_name, tmp_path, capsys):
    """The secret exists in eu-west-1 only, the default region is us-east-1: with
    `--region eu-west-1` the plan reads it there and plans the image."""
    make_image(registry.url, repo_name, "1.0", layers=[layer_bytes(f"{repo_name}-region")])
    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name=f"{repo_name}-hub", SecretString=json.dumps({"username": "u", "password": "p"}))
    config = tmp_path / "mirror.yaml"
    config.write_text(f"""
registries:
  {source.host}: {{insecure: true, credentials: {repo_name}-hub}}
images:
  - source: {source.host}/{repo_name}
    target: mirror/regional
    tags: ["1.0"]
""")
    code = cli.main(["sync", "--config", str(config), "--dry-run", "--json", "--region", "eu-west-1"])
    result = json.loads(capsys.readouterr().out)
    assert result["plan"]["errorDetails"] == [] and code == 0, result["plan"]["errorDetails"]
    assert result["summary"]["toCopy"] == 1


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_every_client_takes_the_one_region(monkeypatch, variable):
    from ecr_mirror import aws

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "ap-southeast-2")
    for service in aws.SERVICES:
        assert aws.client(service).meta.region_name == "ap-southeast-2", service
        assert aws.client(service, "eu-central-1").meta.region_name == "eu-central-1", service


def test_a_client_is_made_once_per_process_even_from_many_threads(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from ecr_mirror import aws

    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: aws.client("sqs"), range(32)))
    assert len({id(c) for c in clients}) == 1
