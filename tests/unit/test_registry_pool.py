"""The registry's connection pool is sized from the setting, not requests' default of 10."""

import pytest

from ecr_mirror.mirror import Mirror, MirrorSettings
from ecr_mirror.reference import parse
from ecr_mirror.registry import RegistryClient


def pool_size(client: RegistryClient) -> int:
    adapter = client.transport.session.get_adapter(f"https://{client.registry}/v2/")
    pool = adapter.poolmanager.connection_from_url(f"https://{client.registry}/v2/")
    return pool.pool.maxsize


@pytest.mark.parametrize("size", [1, 16, 40])
def test_the_pool_keeps_as_many_connections_as_asked(size):
    assert pool_size(RegistryClient("registry.example", pool_size=size)) == size


@pytest.mark.parametrize("concurrency", [4, 16])
def test_the_mirror_sizes_each_source_pool_from_its_concurrency(concurrency, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-docker-config")
    monkeypatch.delenv("ECR_MIRROR_SOURCE_SECRET_ARN", raising=False)
    mirror = Mirror(MirrorSettings(prefix="mirror", concurrency=concurrency, region="us-east-1"),
                    ecr_client=object())
    client = mirror.source_client(parse("registry.example/team/app:1"))
    assert pool_size(client) >= concurrency


def test_the_source_pool_holds_every_planning_head(monkeypatch):
    """Planning's HEADs (plan_concurrency at once) never open a connection the pool discards."""
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-docker-config")
    monkeypatch.delenv("ECR_MIRROR_SOURCE_SECRET_ARN", raising=False)
    mirror = Mirror(MirrorSettings(prefix="mirror", concurrency=4, plan_concurrency=24,
                                   region="us-east-1"), ecr_client=object())
    assert pool_size(mirror.source_client(parse("registry.example/team/app:1"))) >= 24
