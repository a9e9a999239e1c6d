"""One copy per target tag at a time, and a tag never goes back to an older image.

Upstream moves a tag while a copy of its previous image is under way; another
copy of the new image finishes first. The slow copy must not put the tag last
and win: it reports `superseded` and leaves the tag on the newer image.
"""

from __future__ import annotations

import boto3
import pytest

from ecr_mirror.copy import Progress
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror_testing.images import layer_bytes, make_image
from tests.integration.conftest import FAST_RETRY, ecr_image
from tests.integration.test_copy import lease_table  # noqa: F401 - a fixture
from tests.integration.test_warm_state import warm  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def worker(source, ecr, lease_table: str | None = None) -> Mirror:
    """A Mirror as one worker instance builds it (its own lease owner)."""
    return Mirror(MirrorSettings(concurrency=2, retry=FAST_RETRY, region="us-east-1",
                                 lease_table=lease_table,
                                 registries={source.host: SourceRegistry(insecure=True)}), ecr_client=ecr)


class OnFirstBlob(Progress):
    """Runs `action` once, when the copy starts its first blob (mid-copy)."""

    def __init__(self, action) -> None:
        self.action, self.done = action, False

    def blob_started(self, digest: str, size: int) -> None:
        if not self.done:
            self.done = True
            self.action()


def test_a_slower_copy_of_the_older_image_does_not_move_the_tag_back(source, ecr, registry, repo_name):
    older = make_image(registry.url, repo_name, "t", layers=[layer_bytes(f"{repo_name}-1")])
    ref, target = f"{source.host}/{repo_name}:t", "mirror/race:t"
    copies = {}

    def upstream_moves_and_a_faster_copy_finishes():
        newer = make_image(registry.url, repo_name, "t", layers=[layer_bytes(f"{repo_name}-2")])
        copies["newer"] = newer
        copies["b"] = worker(source, ecr).copy(ref, target)

    a = worker(source, ecr).copy(ref, target, progress=OnFirstBlob(upstream_moves_and_a_faster_copy_finishes))

    newer = copies["newer"]
    assert copies["b"].status == "copied" and copies["b"].target_digest == newer.digest
    assert a.status == "superseded", a.error
    assert a.source_digest == older.digest and a.superseded_by == newer.digest
    assert a.ok  # nothing went wrong: the worker counts it as done
    assert "superseded" in a.summary().lower() and newer.digest in a.summary()
    assert ecr_image(ecr, "mirror/race", tag="t")["imageId"]["imageDigest"] == newer.digest


def test_two_copies_of_one_tag_do_not_overlap(source, ecr, registry, repo_name, lease_table):
    """While one worker copies a tag it holds the tag's lease (DynamoDB): a second
    worker asked for the same tag hands it back for a short while, without
    pulling anything, instead of copying alongside."""
    image = make_image(registry.url, repo_name, "t", layers=[layer_bytes(f"{repo_name}-lease")])
    ref, target = f"{source.host}/{repo_name}:t", "mirror/leased:t"
    a, b = worker(source, ecr, lease_table), worker(source, ecr, lease_table)
    dynamodb = boto3.client("dynamodb")
    key = {"lease": {"S": "mirror/leased:t"}}
    seen = {}

    def second_worker_tries_the_same_tag():
        seen["holder"] = dynamodb.get_item(TableName=lease_table, Key=key)["Item"]["owner"]["S"]
        seen["b"] = b.copy(ref, target)

    report = a.copy(ref, target, progress=OnFirstBlob(second_worker_tries_the_same_tag))

    assert report.status == "copied", report.error
    assert seen["holder"] == a.leases.owner
    busy = seen["b"]
    assert busy.status == "deferred" and busy.error["type"] == "TagBusy", busy.error
    assert 0 < busy.error["retryAfter"] <= 60  # a short retry, not a long wait
    assert busy.blobs_uploaded == 0 and busy.manifests_fetched == 0
    # b's own requests: it looked (HEAD, ECR's tag), pulled nothing, read no blob.
    assert busy.requests.get("manifest_head") == 1, busy.requests
    assert busy.requests.get("manifest_get", 0) == busy.requests.get("blob_get", 0) == 0
    assert "Item" not in dynamodb.get_item(TableName=lease_table, Key=key)  # released
    assert b.copy(ref, target).status == "unchanged"  # its retry finds the work done
    assert ecr_image(ecr, "mirror/leased", tag="t")["imageId"]["imageDigest"] == image.digest


def test_the_cli_exits_1_when_superseded_since_the_tag_does_not_hold_the_source(
        source, ecr, registry, repo_name, monkeypatch, capsys):
    import json

    from ecr_mirror import cli
    from ecr_mirror import mirror as mirror_module

    make_image(registry.url, repo_name, "t", layers=[layer_bytes(f"{repo_name}-c1")])
    monkeypatch.setattr(mirror_module, "Progress", lambda: OnFirstBlob(lambda: make_image(
        registry.url, repo_name, "t", layers=[layer_bytes(f"{repo_name}-c2")])))

    code = cli.main(["copy", f"{source.host}/{repo_name}:t", "mirror/cli-race", "--insecure", "--json"])

    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "superseded" and report["supersededBy"].startswith("sha256:")


def test_the_worker_counts_a_superseded_image_as_done(warm, ecr, registry, repo_name, monkeypatch,
                                                      capsys):
    """Through the real worker handler (SQS record): a superseded image is not a
    failed item (no retry, no DLQ) and has its own metric."""
    import json

    from ecr_mirror import mirror as mirror_module
    from ecr_mirror.handlers import worker as worker_handler
    from ecr_mirror_testing.lambdas import FakeContext, sqs_record
    make_image(registry.url, "library/nginx", "moving", layers=[layer_bytes(f"{repo_name}-w1")])
    moved = {}

    def upstream_moves():
        moved["newer"] = make_image(registry.url, "library/nginx", "moving",
                                    layers=[layer_bytes(f"{repo_name}-w2")])
    # The worker's copy gets this hook: upstream moves while its first blob starts.
    monkeypatch.setattr(mirror_module, "Progress", lambda: OnFirstBlob(upstream_moves))
    capsys.readouterr()

    body = json.dumps({"source": "nginx:moving", "target": "mirror/moving:moving"})
    answer = worker_handler.handler({"Records": [sqs_record(body)]}, FakeContext())

    assert answer["batchItemFailures"] == []
    assert "ImagesSuperseded" in capsys.readouterr().out  # the EMF metric line
    assert ecr.list_images(repositoryName="mirror/moving")["imageIds"] == []  # nothing tagged
