"""The concurrency setting reaches the source registry's connection pool: at
`--concurrency 16` an 8-platform index is fetched over as many kept-alive
connections as there are blob workers, not 10 with the rest opened and thrown
away ("Connection pool is full, discarding connection")."""

from __future__ import annotations

import contextlib
import logging
import threading

import pytest

from ecr_mirror import aws
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror_testing.images import make_index
from ecr_mirror_testing.retry import FAST_RETRY

pytestmark = pytest.mark.integration

PLATFORMS = [("linux", arch, None) for arch in ("amd64", "386", "ppc64le", "s390x", "riscv64",
                                                "mips64le")] + [("linux", "arm64", "v8"),
                                                                ("linux", "arm", "v7")]
#: More blob answers than requests' default pool keeps (10), at most the concurrency.
TOGETHER = 12


def hold_blobs_until_together(source, monkeypatch) -> list[bool]:
    """The source holds its first blob answers until TOGETHER of them are in
    flight at once, as a slow registry far away would: the client then really
    has that many connections open. (A timeout breaks the barrier: the copy goes on.)"""
    met: list[bool] = []
    barrier = threading.Barrier(TOGETHER, action=lambda: met.append(True))
    take_drop = source._take_drop

    def gated(digest):
        if not met and not barrier.broken:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=20)
        return take_drop(digest)

    monkeypatch.setattr(source, "_take_drop", gated)
    return met


def test_an_8_platform_index_at_concurrency_16_fills_no_pool(ecr, source, registry, repo_name,
                                                             caplog, monkeypatch):
    index = make_index(registry.url, repo_name, "wide", platforms=PLATFORMS, oci=False,
                       attestations=False)
    settings = MirrorSettings(prefix="mirror", concurrency=16, retry=FAST_RETRY,
                              registries={source.host: SourceRegistry(insecure=True)},
                              region="us-east-1")
    mirror = Mirror(settings, ecr_client=aws.client("ecr", "us-east-1", concurrency=16))
    met = hold_blobs_until_together(source, monkeypatch)

    with caplog.at_level(logging.WARNING, logger="urllib3"):
        report = mirror.copy(f"{source.host}/{repo_name}:wide", "mirror/wide")

    assert report.status == "copied", report.error
    assert report.target_digest == index.digest
    assert met  # the client did have that many blob answers open at once
    assert source.counts["GET blob"] == 8 * 3  # each platform: a config and two layers
    full = [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()]
    assert full == []
