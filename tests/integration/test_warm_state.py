"""A warm Lambda runs many events in one process: each must stand on its own.

The handlers keep a `Mirror` between invocations so tokens and connections are
reused; nothing an event carries (its target's region, the time left) may stay
behind in it, and a changed config must reach it without a cold start.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters_base

from ecr_mirror.handlers import common, worker
from ecr_mirror.handlers import warm as warm_function
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext
from tests.integration.conftest import ecr_image

pytestmark = pytest.mark.integration
PARAMETER = "/ecr-mirror/warm-config"


@pytest.fixture
def warm(monkeypatch, source, ecr, ecr_endpoint):
    """A worker function's environment (Lambda sets AWS_REGION), cold: no Mirror yet."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    for name, value in {"AWS_REGION": "us-east-1", "ECR_MIRROR_PREFIX": "mirror",
                        "POWERTOOLS_METRICS_NAMESPACE": "EcrMirrorTest",
                        "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={source.url}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(warm_function, "_mirror", None)
    monkeypatch.setattr(common, "_cache", {})
    return source


def test_a_target_in_another_region_does_not_move_the_next_events_region(warm, registry, ecr):
    image = make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("warm-region")])
    elsewhere = {"source": "nginx:stable",
                 "target": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/nginx:stable"}
    answer = worker.handler(elsewhere, FakeContext())
    # The function may only write in its own region (its role says so): a clear refusal.
    assert answer["status"] == "failed" and answer["error"]["type"] == "UsageError"
    assert "eu-west-1" in answer["error"]["message"] and "us-east-1" in answer["error"]["message"]

    ordinary = {"source": "nginx:stable", "target": "mirror/nginx:stable"}
    answer = worker.handler(ordinary, FakeContext())
    assert answer["status"] == "copied", answer["error"]
    assert ecr_image(ecr, "mirror/nginx", tag="stable")["imageId"]["imageDigest"] == image.digest
    eu = boto3.client("ecr", region_name="eu-west-1")
    assert eu.describe_repositories()["repositories"] == []


def test_the_worker_sees_a_changed_config_after_the_cache_expires(warm, registry, ecr, monkeypatch):
    """The SSM config is cached for CONFIG_TTL_SECONDS; after that, a changed config
    (here: new repositories become tag-immutable) applies without a cold start."""
    now = [datetime(2026, 1, 1)]

    class Clock(datetime):  # Powertools' parameter cache reads datetime.now()
        @classmethod
        def now(cls, tz=None):
            return now[0]

    monkeypatch.setattr(parameters_base, "datetime", Clock)
    monkeypatch.setenv("ECR_MIRROR_CONFIG_PARAMETER", PARAMETER)
    ssm = boto3.client("ssm")

    def write_config(mutability: str) -> None:
        ssm.put_parameter(Name=PARAMETER, Type="String", Overwrite=True, Value=(
            f"defaults:\n  repository:\n    tagMutability: {mutability}\nimages: []\n"))

    def copy_to(repository: str) -> str:
        answer = worker.handler({"source": "nginx:stable", "target": f"{repository}:stable"},
                                FakeContext())
        assert answer["status"] == "copied", answer["error"]
        return ecr.describe_repositories(repositoryNames=[repository])["repositories"][0][
            "imageTagMutability"]

    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("warm-config")])
    write_config("MUTABLE")
    assert copy_to("mirror/first") == "MUTABLE"
    warm_mirror = warm_function.get_mirror()

    write_config("IMMUTABLE")
    now[0] += timedelta(seconds=10)  # within the cache's lifetime: the cached config still applies
    assert copy_to("mirror/second") == "MUTABLE"

    now[0] += timedelta(seconds=common.CONFIG_TTL_SECONDS + 1)  # past it: read again, and applied
    assert copy_to("mirror/third") == "IMMUTABLE"
    assert warm_function.get_mirror() is not warm_mirror

    now[0] += timedelta(seconds=common.CONFIG_TTL_SECONDS + 1)  # read again, unchanged: the warm Mirror is kept
    rebuilt = warm_function.get_mirror()
    now[0] += timedelta(seconds=common.CONFIG_TTL_SECONDS + 1)
    assert warm_function.get_mirror() is rebuilt
