"""Planning keeps one bounded pool of HEADs per source registry, shared by every
entry: as many HEADs in flight as the setting allows, whether one repository
holds all the tags or each repository one tag, and never more (issue 14, #2)."""

from __future__ import annotations

import time

import pytest

from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.sync import build_plan, load_config
from ecr_mirror_testing.images import layer_bytes, make_image, push_manifest
from ecr_mirror_testing.retry import FAST_RETRY

pytestmark = pytest.mark.integration

POOL = 16  # the default: see ecr_mirror.settings.DEFAULT_PLAN_CONCURRENCY


def one_repository(registry, repo_name: str, tags: int) -> list[tuple[str, list[str]]]:
    image = make_image(registry.url, repo_name, "t0", layers=[layer_bytes(repo_name, 256)])
    for i in range(1, tags):
        push_manifest(registry.url, repo_name, f"t{i}", image.raw, image.media_type)
    return [(repo_name, [f"t{i}" for i in range(tags)])]


def many_repositories(registry, repo_name: str, repositories: int) -> list[tuple[str, list[str]]]:
    entries = []
    for i in range(repositories):
        make_image(registry.url, f"{repo_name}-{i}", "t0", layers=[layer_bytes(i, 256)])
        entries.append((f"{repo_name}-{i}", ["t0"]))
    return entries


def planned(source, entries: list[tuple[str, list[str]]]):
    """(config, settings): each repository mirrored from `source` (the proxy) into mirror/."""
    config = load_config("images:\n" + "".join(
        f"  - source: {source.host}/{repo}\n    target: mirror/{repo}\n    tags: [{', '.join(tags)}]\n"
        for repo, tags in entries))
    return config, MirrorSettings(retry=FAST_RETRY, region="us-east-1",
                                  registries={source.host: SourceRegistry(insecure=True)})


@pytest.mark.parametrize("layout", [(one_repository, 100), (many_repositories, 100)],
                         ids=["1x100", "100x1"])
def test_heads_in_flight_reach_the_pool_and_never_pass_it(layout, ecr, source, registry,
                                                          repo_name):
    build, n = layout
    entries = build(registry, repo_name, n)
    config, settings = planned(source, entries)
    source.reset_counts()
    source.hold_until("HEAD manifest", POOL)
    source.delay = 0.005  # a little latency, so a pool larger than POOL would show

    plan = build_plan(config, Mirror(settings, ecr_client=ecr))

    assert source.counts["HEAD manifest"] == 100
    assert source.peak["HEAD manifest"] == POOL
    # Every tag planned once (the order is tests/unit/test_plan_order.py's).
    assert sorted(job.target for job in plan.jobs) == sorted(
        f"mirror/{repo}:{tag}" for repo, tags in entries for tag in tags)
    assert not plan.errors


def test_heads_go_out_before_the_ecr_client_is_made(ecr, source, registry, repo_name, monkeypatch):
    """Making the process's ECR client takes a few hundred ms of CPU (botocore's
    service model): the first entries' HEADs are at the registry meanwhile, not
    queued behind it (16 entry threads once waited on its lock before any HEAD)."""
    from ecr_mirror import aws

    entries = many_repositories(registry, repo_name, 4)
    config, settings = planned(source, entries)
    source.reset_counts()
    source.hold_until("HEAD manifest", 4)  # each HEAD stays in the proxy until all 4 are
    made, real = [], aws.client

    def client(service: str, *args, **kwargs):
        if service == "ecr" and not made:
            for _ in range(500):  # until a HEAD is at the proxy, for at most ~5 s (polled)
                if source.peak["HEAD manifest"]:
                    break
                time.sleep(0.01)
            made.append(source.peak["HEAD manifest"])  # HEADs at the registry as the client is made
        return ecr if service == "ecr" else real(service, *args, **kwargs)

    monkeypatch.setattr(aws, "client", client)
    plan = build_plan(config, Mirror(settings))

    assert made and all(made)  # every entry's ECR client came after a HEAD was out
    assert source.counts["HEAD manifest"] == 4 and not plan.errors
    assert sorted(job.target for job in plan.jobs) == sorted(f"mirror/{repo}:t0" for repo, _ in entries)
