"""No wait outlasts the time a Lambda copy has left: it defers instead.

The clock is a fake one that only moves when the copy sleeps, so the tests
assert what the copy did (attempts, seconds slept, the outcome), not wall time.
"""

from __future__ import annotations

import threading

import pytest

from ecr_mirror.deadline import Deadline
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.registry import RetryPolicy
from ecr_mirror_testing.images import layer_bytes, make_image, make_index
from tests.integration.conftest import MiB
from tests.integration.test_copy import lease_table  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


class FakeClock:
    """Seconds left before a Lambda's timeout; only sleeping spends them."""

    def __init__(self, left: float) -> None:
        self.left_at_start = left
        self.slept = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time_left(self) -> float:
        with self._lock:
            return self.left_at_start - self.slept

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept += seconds
            self.sleeps.append(seconds)


def copy_with_deadline(source, ecr, path: str, target: str, clock: FakeClock, margin: float,
                       **settings):
    """Copy as the worker does, with the default retry policy (5 attempts,
    Retry-After waits up to 60 s), on the fake clock; the report."""
    mirror = Mirror(MirrorSettings(region="us-east-1", retry=RetryPolicy(),
                                   registries={source.host: SourceRegistry(insecure=True)}, **settings),
                    ecr_client=ecr)
    return mirror.copy(f"{source.host}/{path}", target,
                       deadline=Deadline(clock.time_left, margin=margin, sleeper=clock.sleep))


def tags(ecr, repository: str) -> list[str]:
    try:
        images = ecr.list_images(repositoryName=repository)["imageIds"]
    except ecr.exceptions.RepositoryNotFoundException:
        return []
    return [i["imageTag"] for i in images if "imageTag" in i]


def test_retry_after_waits_stop_at_the_deadline_and_the_image_is_deferred(source, ecr, registry,
                                                                          repo_name):
    """A blob answers 503 with Retry-After: 3; 20 s are left with a 5 s margin.
    The copy sleeps at most the 15 s it has, then defers: nothing is tagged."""
    image = make_image(registry.url, repo_name, "slow", layers=[layer_bytes(f"{repo_name}-slow")])
    layer = image.json["layers"][0]["digest"]  # the largest blob: copied first
    source.fail("GET blob", 503, headers={"Retry-After": "3"}, times=100)
    clock = FakeClock(left=20)

    report = copy_with_deadline(source, ecr, f"{repo_name}:slow", "mirror/deadline:slow", clock,
                                margin=5, concurrency=1)

    assert report.status == "deferred" and report.error["type"] == "Deferred", report.error
    assert "503" in report.error["message"] and "deadline" in report.error["message"]
    assert clock.slept <= 15
    # Five transport attempts (4 x 3 s), one short whole-blob backoff (1-2 s),
    # one more attempt: its 3 s wait would cross the margin.
    layer_gets = [p for m, p, _ in source.requests if m == "GET" and p.endswith(layer)]
    assert len(layer_gets) == 6, clock.sleeps
    assert clock.sleeps[:4] == [3, 3, 3, 3] and len(clock.sleeps) == 5
    assert tags(ecr, "mirror/deadline") == []


def test_the_deadline_reaches_the_child_and_blob_threads(source, ecr, registry, repo_name):
    """An index: children are copied in one pool, their blobs in another. The
    waits in those threads answer to the copy's deadline too: they go through its
    clock, and the copy defers instead of failing after its retries."""
    make_index(registry.url, repo_name, "wide", attestations=False,
               platforms=[("linux", "amd64", None), ("linux", "arm64", None)])
    source.fail("GET blob", 503, headers={"Retry-After": "2"}, times=1000)
    clock = FakeClock(left=30)

    report = copy_with_deadline(source, ecr, f"{repo_name}:wide", "mirror/deadline:wide", clock,
                                margin=10, concurrency=4)

    assert report.status == "deferred" and report.error["type"] == "Deferred", report.error
    assert 2 in clock.sleeps  # the blob threads' Retry-After waits used the deadline's clock
    assert source.counts["GET blob"] >= 2
    assert tags(ecr, "mirror/deadline") == []


def test_waiting_for_another_workers_blob_stops_at_the_deadline(source, ecr, registry, repo_name,
                                                                lease_table):
    """Another worker holds the lease of a big layer and never finishes: the copy
    polls ECR every LEASE_POLL_SECONDS while its time allows, then defers."""
    from ecr_mirror.copy.blobs import LEASE_POLL_SECONDS
    from ecr_mirror.leases import DynamoLeases, blob_key

    image = make_image(registry.url, repo_name, "held", layers=[layer_bytes(f"{repo_name}-held", 2 * MiB)])
    layer = image.json["layers"][0]["digest"]
    assert DynamoLeases(lease_table, owner="another worker").acquire(blob_key("mirror/held", layer), 900)
    clock = FakeClock(left=10)

    report = copy_with_deadline(source, ecr, f"{repo_name}:held", "mirror/held:held", clock,
                                margin=5, concurrency=2, lease_table=lease_table)

    assert report.status == "deferred" and report.error["type"] == "Deferred", report.error
    assert clock.sleeps == [LEASE_POLL_SECONDS] * 2  # 5 usable seconds: two polls, not a third
    assert not [p for m, p, _ in source.requests if m == "GET" and p.endswith(layer)]
    assert tags(ecr, "mirror/held") == []
