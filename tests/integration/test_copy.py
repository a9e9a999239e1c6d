"""The copy engine end to end: the real distribution registry as the source,
ECR emulated with ECR's own rules, the counts taken at the source."""

from __future__ import annotations

import pytest

from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.images import PushedImage, layer_bytes, make_foreign_layer_image, make_image, make_index
from tests.integration.conftest import MiB, create_lease_table, ecr_image

pytestmark = pytest.mark.integration


def assert_mirrored(ecr, repository: str, tag: str, image: PushedImage) -> None:
    """ECR holds the source's exact bytes under the same digests, children included."""
    top = ecr_image(ecr, repository, tag=tag)
    assert top["imageId"]["imageDigest"] == image.digest
    assert top["imageManifest"].encode() == image.raw
    for child in image.children:
        got = ecr_image(ecr, repository, digest=child.digest)
        assert got["imageManifest"].encode() == child.raw


def assert_second_run_unchanged(copy, source, path: str, target: str) -> None:
    source.reset_counts()
    again = copy(path, target)
    assert again.status == "unchanged", again.error
    assert source.counts["GET manifest"] == 0
    assert source.counts["GET blob"] == 0
    assert again.manifests_fetched == 0 and again.blobs_uploaded == 0


@pytest.mark.parametrize("oci", [False, True], ids=["docker-v2", "oci-manifest"])
def test_single_manifest_is_copied_byte_for_byte(copy, ecr, source, registry, repo_name, oci):
    image = make_image(registry.url, repo_name, "1.0", oci=oci,
                       layers=[layer_bytes(f"{repo_name}-a"), layer_bytes(f"{repo_name}-b")])
    report = copy(f"{repo_name}:1.0", "mirror/single:1.0")

    assert report.status == "copied", report.error
    assert report.source_digest == report.target_digest == image.digest
    assert report.blobs_uploaded == 3 and report.bytes_uploaded == sum(
        d["size"] for d in [image.json["config"], *image.json["layers"]])
    assert report.manifests_fetched == 1
    assert report.repository_created
    assert_mirrored(ecr, "mirror/single", "1.0", image)
    assert_second_run_unchanged(copy, source, f"{repo_name}:1.0", "mirror/single:1.0")


@pytest.mark.parametrize("oci", [True, False], ids=["oci-index-attestations", "docker-manifest-list"])
def test_multi_arch_index_is_copied_with_every_child(copy, ecr, source, registry, repo_name, oci):
    platforms = [("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7")]
    index = make_index(registry.url, repo_name, "stable", platforms=platforms, oci=oci,
                       attestations=oci)
    report = copy(f"{repo_name}:stable", "mirror/multi")

    assert report.status == "copied", report.error
    assert report.target == "mirror/multi:stable"  # the tag defaults to the source's
    assert report.target_digest == index.digest
    assert len(index.children) == (6 if oci else 3)
    assert report.manifests_put == len(index.children) + 1
    assert report.manifests_fetched == 1 + len(index.children)
    assert_mirrored(ecr, "mirror/multi", "stable", index)
    assert_second_run_unchanged(copy, source, f"{repo_name}:stable", "mirror/multi")


def test_children_already_in_ecr_are_not_fetched_again(copy, ecr, source, registry, repo_name):
    platforms = [("linux", "amd64", None), ("linux", "arm64", None)]
    index = make_index(registry.url, repo_name, "v1", platforms=platforms)
    assert copy(f"{repo_name}:v1", "mirror/idx:v1").status == "copied"
    # The same children under a new tag: only the index is new.
    from ecr_mirror_testing.images import push_manifest
    push_manifest(registry.url, repo_name, "v1-copy", index.raw + b"\n", index.media_type)
    source.reset_counts()
    report = copy(f"{repo_name}:v1-copy", "mirror/idx:v1-copy")
    assert report.status == "copied", report.error
    assert source.counts["GET manifest"] == 1 and source.counts["GET blob"] == 0
    assert report.blobs_uploaded == 0 and report.manifests_put == 1


def test_second_tag_uploads_only_its_own_layers(copy, ecr, registry, repo_name):
    base = [layer_bytes(f"{repo_name}-base1", 300_000), layer_bytes(f"{repo_name}-base2", 200_000)]
    first = make_image(registry.url, repo_name, "a", layers=[*base, layer_bytes(f"{repo_name}-a")])
    second = make_image(registry.url, repo_name, "b", layers=[*base, layer_bytes(f"{repo_name}-b")],
                        config_extra={"Labels": {"variant": "b"}})
    r1 = copy(f"{repo_name}:a", "mirror/shared:a")
    strict_ecr.reset_calls()
    r2 = copy(f"{repo_name}:b", "mirror/shared:b")

    assert r1.status == r2.status == "copied"
    assert r1.blobs_uploaded == 4
    assert r2.blobs_uploaded == 2  # its config and its own top layer
    assert r2.blobs_skipped == 2 and r2.bytes_skipped == 500_000
    assert strict_ecr.calls["CompleteLayerUpload"] == 2
    assert_mirrored(ecr, "mirror/shared", "a", first)
    assert_mirrored(ecr, "mirror/shared", "b", second)


def test_large_layer_streams_in_more_than_three_parts(copy, ecr, source, registry, repo_name):
    big = layer_bytes(f"{repo_name}-big", 16 * MiB + 12345)  # 4 parts of 5 MiB
    image = make_image(registry.url, repo_name, "big", layers=[big])
    strict_ecr.reset_calls()
    report = copy(f"{repo_name}:big", "mirror/big:big")

    assert report.status == "copied", report.error
    assert strict_ecr.calls["UploadLayerPart"] == 4 + 1  # the big layer, then the config
    assert source.counts["GET blob"] == 2  # each blob read once, never buffered whole
    assert_mirrored(ecr, "mirror/big", "big", image)


def test_foreign_layers_are_not_uploaded(copy, ecr, source, registry, repo_name):
    image = make_foreign_layer_image(registry.url, repo_name, "win")
    report = copy(f"{repo_name}:win", "mirror/win:win")

    assert report.status == "copied", report.error
    assert report.foreign_layers_skipped == 1
    assert report.blobs_uploaded == len(image.blobs)
    fetched = {p.rsplit("/", 1)[-1] for (m, p, _) in source.requests if "/blobs/" in p}
    assert not fetched & set(image.foreign)
    assert_mirrored(ecr, "mirror/win", "win", image)


def test_corrupt_source_blob_fails_and_the_tag_stays(copy, ecr, registry, repo_name):
    old = make_image(registry.url, repo_name, "t", layers=[layer_bytes(f"{repo_name}-old")])
    assert copy(f"{repo_name}:t", "mirror/corrupt:t").status == "copied"
    bad_layer = layer_bytes(f"{repo_name}-new", 200_000)
    new = make_image(registry.url, repo_name, "t", layers=[bad_layer])
    new_layer = new.json["layers"][0]["digest"]
    registry.corrupt_blob(new_layer)

    report = copy(f"{repo_name}:t", "mirror/corrupt:t")

    assert report.status == "failed"
    assert report.error["type"] == "DigestMismatch" and new_layer in report.error["message"]
    assert ecr_image(ecr, "mirror/corrupt", tag="t")["imageId"]["imageDigest"] == old.digest
    missing = ecr.batch_check_layer_availability(repositoryName="mirror/corrupt",
                                                 layerDigests=[new_layer])
    assert missing["failures"] and not missing["layers"]  # never completed in ECR


def test_dropped_connection_mid_blob_resumes_with_range(copy, ecr, source, registry, repo_name):
    big = layer_bytes(f"{repo_name}-drop", 7 * MiB)
    image = make_image(registry.url, repo_name, "d", layers=[big])
    layer = image.json["layers"][0]["digest"]
    source.drop_blob_once(layer, after_bytes=3 * MiB + 17)

    report = copy(f"{repo_name}:d", "mirror/drop:d")

    assert report.status == "copied", report.error
    ranges = [h.get("Range") for (m, p, h) in source.requests if p.endswith(layer)]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:-1]) > 0
    assert_mirrored(ecr, "mirror/drop", "d", image)


def test_a_lost_complete_layer_upload_answer_is_looked_up_in_ecr_not_copied_again(
        copy, ecr, source, registry, repo_name):
    """ECR stores the layer but its CompleteLayerUpload answer is lost (a 5xx):
    the copy asks ECR whether it has the layer before fetching it again."""
    image = make_image(registry.url, repo_name, "c", layers=[layer_bytes(f"{repo_name}-lost", 6 * MiB)])
    strict_ecr.lose_complete_answers(times=1)

    report = copy(f"{repo_name}:c", "mirror/lost:c", concurrency=1)

    assert report.status == "copied", report.error
    assert source.counts["GET blob"] == 2  # the layer and the config, once each
    assert strict_ecr.calls["InitiateLayerUpload"] == 2
    assert report.blobs_uploaded == 2
    assert_mirrored(ecr, "mirror/lost", "c", image)


def test_repository_is_created_with_the_configured_settings(copy, ecr, registry, repo_name):
    from ecr_mirror.ecr import RepositorySettings

    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    settings = RepositorySettings(scan_on_push=False, tag_mutability="IMMUTABLE", encryption="KMS",
                                  kms_key="arn:aws:kms:us-east-1:123456789012:key/abc")
    report = copy(f"{repo_name}:1", "mirror/created:1", repository=settings)

    assert report.status == "copied" and report.repository_created
    repo = ecr.describe_repositories(repositoryNames=["mirror/created"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"


def test_immutable_tag_is_a_reported_conflict_not_a_move(copy, ecr, registry, repo_name):
    from ecr_mirror.ecr import RepositorySettings

    immutable = RepositorySettings(tag_mutability="IMMUTABLE")
    first = make_image(registry.url, repo_name, "x", layers=[layer_bytes(f"{repo_name}-1")])
    assert copy(f"{repo_name}:x", "mirror/immut:x", repository=immutable).status == "copied"
    make_image(registry.url, repo_name, "x", layers=[layer_bytes(f"{repo_name}-2")])

    report = copy(f"{repo_name}:x", "mirror/immut:x", repository=immutable)

    assert report.status == "failed" and report.error["type"] == "TagConflict"
    assert ecr_image(ecr, "mirror/immut", tag="x")["imageId"]["imageDigest"] == first.digest


def test_platform_subset_writes_a_new_index_and_says_why(copy, ecr, source, registry, repo_name):
    platforms = [("linux", "amd64", None), ("linux", "arm64", None), ("linux", "s390x", None)]
    index = make_index(registry.url, repo_name, "p", platforms=platforms)
    amd64, amd64_att = index.children[0], index.children[1]

    report = copy(f"{repo_name}:p", "mirror/subset:p", platforms=["linux/amd64"])

    assert report.status == "copied", report.error
    assert report.target_digest != index.digest
    assert index.digest in report.digest_note and "linux/amd64" in report.digest_note
    got = ecr_image(ecr, "mirror/subset", tag="p")
    import json
    manifests = json.loads(got["imageManifest"])["manifests"]
    assert [m["digest"] for m in manifests] == [amd64.digest, amd64_att.digest]
    assert ecr_image(ecr, "mirror/subset", digest=amd64.digest)["imageManifest"].encode() == amd64.raw
    assert report.manifests_fetched == 3  # the index and the two kept children
    # the second run is unchanged without a pull, and still says why the digest differs
    source.reset_counts()
    again = copy(f"{repo_name}:p", "mirror/subset:p", platforms=["linux/amd64"])
    assert again.status == "unchanged" and again.target_digest == report.target_digest
    assert source.counts["GET manifest"] == 0 and again.digest_note


def test_unknown_platform_fails_naming_what_exists(copy, ecr, registry, repo_name):
    make_index(registry.url, repo_name, "p", platforms=[("linux", "amd64", None)])
    report = copy(f"{repo_name}:p", "mirror/none:p", platforms=["linux/riscv64"])
    assert report.status == "failed" and "linux/riscv64" in report.error["message"]
    assert "linux/amd64" in report.error["message"]


def test_missing_image_fails_with_a_clear_error(copy, ecr, repo_name):
    report = copy(f"{repo_name}:nope", "mirror/missing:nope")
    assert report.status == "failed"
    assert report.error["type"] in ("NotFound", "ManifestUnknown")
    assert repo_name in report.error["message"]


def test_failure_inside_an_index_leaves_the_tag_on_the_old_index(copy, ecr, registry, repo_name):
    platforms = [("linux", "amd64", None), ("linux", "arm64", None)]
    old = make_index(registry.url, repo_name, "m", platforms=platforms)
    assert copy(f"{repo_name}:m", "mirror/idxfail:m").status == "copied"
    new = make_index(registry.url, repo_name, "m", platforms=platforms, layer_size=70_000)
    arm64 = new.children[2]
    registry.corrupt_blob(arm64.json["layers"][-1]["digest"])

    report = copy(f"{repo_name}:m", "mirror/idxfail:m")

    assert report.status == "failed" and report.error["type"] == "DigestMismatch"
    assert ecr_image(ecr, "mirror/idxfail", tag="m")["imageId"]["imageDigest"] == old.digest
    put = ecr.describe_images(repositoryName="mirror/idxfail")["imageDetails"]
    assert new.digest not in {i["imageDigest"] for i in put}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_blobs_are_copied_in_parallel_up_to_the_concurrency(source, ecr, registry, repo_name,
                                                            concurrency):
    """Every blob upload waits (bounded) until `concurrency` uploads are in flight:
    with parallel copies they all get there; the count never goes above it."""
    import threading

    from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
    from tests.integration.conftest import FAST_RETRY
    from tests.integration.test_ecr_target import Wrapped

    make_image(registry.url, repo_name, "par",
               layers=[layer_bytes(f"{repo_name}-{i}", 50_000) for i in range(6)])
    in_flight, peak, reached = [0], [0], []
    cond = threading.Condition()

    def initiate_layer_upload(**kwargs):
        with cond:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            cond.notify_all()
            reached.append(cond.wait_for(lambda: in_flight[0] >= concurrency, timeout=10))
        return ecr.initiate_layer_upload(**kwargs)

    def complete_layer_upload(**kwargs):
        answer = ecr.complete_layer_upload(**kwargs)
        with cond:
            in_flight[0] -= 1
        return answer

    client = Wrapped(ecr, initiate_layer_upload=initiate_layer_upload,
                     complete_layer_upload=complete_layer_upload)
    settings = MirrorSettings(concurrency=concurrency, retry=FAST_RETRY, region="us-east-1",
                              registries={source.host: SourceRegistry(insecure=True)})
    report = Mirror(settings, ecr_client=client).copy(f"{source.host}/{repo_name}:par", "mirror/par:par")

    assert report.status == "copied" and report.blobs_uploaded == 7
    assert peak[0] == concurrency
    assert all(reached[:7 - concurrency + 1])  # the first uploads all saw `concurrency` in flight


@pytest.fixture
def lease_table(ecr, ecr_endpoint, repo_name, monkeypatch) -> str:
    """A blob lease table (the stack's LeaseTable) on the emulator; its name."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ecr_endpoint)
    table = f"leases-{repo_name.replace('/', '-')}"
    create_lease_table(table)
    return table


def leasing_worker(source, ecr, table: str):
    """A Mirror as a worker instance builds it: its own lease owner, the shared table."""
    from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
    from tests.integration.conftest import FAST_RETRY

    settings = MirrorSettings(concurrency=4, retry=FAST_RETRY, region="us-east-1", lease_table=table,
                              registries={source.host: SourceRegistry(insecure=True)})
    return Mirror(settings, ecr_client=ecr)


def test_two_workers_sharing_a_layer_fetch_and_upload_it_once(source, ecr, registry, repo_name,
                                                              lease_table, monkeypatch):
    """Two worker instances copy two tags of one repository that share a big base
    layer. The first holds the layer's lease (DynamoDB, as the stack's table): the
    second uploads its own blobs, waits for the shared one to land in ECR, and never
    fetches it. Both tags end up complete, with their upstream digests."""
    import threading

    import boto3

    from ecr_mirror.copy import blobs
    from ecr_mirror.leases import DynamoLeases, blob_key

    monkeypatch.setattr(blobs, "LEASE_POLL_SECONDS", 0.02)
    base = layer_bytes(f"{repo_name}-base", 6 * MiB)  # two ECR parts
    first = make_image(registry.url, repo_name, "a", layers=[base, layer_bytes(f"{repo_name}-a")])
    second = make_image(registry.url, repo_name, "b", layers=[base, layer_bytes(f"{repo_name}-b")],
                        config_extra={"Labels": {"variant": "b"}})
    shared = first.blobs[1]
    assert shared in second.blobs

    a, b = leasing_worker(source, ecr, lease_table), leasing_worker(source, ecr, lease_table)
    assert isinstance(a.leases, DynamoLeases) and a.leases.owner != b.leases.owner
    # Worker a is in the middle of uploading the shared layer when worker b starts.
    assert a.leases.acquire(blob_key("mirror/shared", shared), 300)
    reports = {}
    b_thread = threading.Thread(target=lambda: reports.setdefault(
        "b", b.copy(f"{source.host}/{repo_name}:b", "mirror/shared:b")))
    source.reset_counts()
    b_thread.start()
    reports["a"] = a.copy(f"{source.host}/{repo_name}:a", "mirror/shared:a")
    b_thread.join(timeout=60)

    assert reports["a"].status == reports["b"].status == "copied", (reports["a"].error, reports["b"].error)
    assert reports["a"].blobs_uploaded == 3
    assert reports["b"].blobs_uploaded == 2 and reports["b"].blobs_skipped == 1
    assert reports["b"].bytes_skipped == len(base)
    shared_gets = [path for method, path, _ in source.requests if method == "GET" and path.endswith(shared)]
    assert len(shared_gets) == 1  # fetched by a only
    assert_mirrored(ecr, "mirror/shared", "a", first)
    assert_mirrored(ecr, "mirror/shared", "b", second)
    assert "Item" not in boto3.client("dynamodb").get_item(  # released
        TableName=lease_table, Key={"lease": {"S": f"mirror/shared@{shared}"}})


def test_blobs_under_a_megabyte_are_copied_without_a_lease(source, ecr, registry, repo_name, lease_table):
    """Another worker holds (and never gives back) the lease of a small layer: the
    copy does not wait for it, since a lease costs more calls than the copy."""
    import threading

    from ecr_mirror.leases import DynamoLeases, blob_key

    small = layer_bytes(f"{repo_name}-small", 200_000)
    image = make_image(registry.url, repo_name, "s", layers=[small])
    assert DynamoLeases(lease_table, owner="someone else").acquire(blob_key("mirror/small", image.blobs[1]), 900)
    import boto3

    from tests.integration.test_ecr_target import Wrapped

    calls = []
    dynamodb = boto3.client("dynamodb")
    worker = leasing_worker(source, ecr, lease_table)
    def lease_key(kw: dict) -> str:
        return (kw.get("Item") or kw.get("Key"))["lease"]["S"]
    worker.leases._client = Wrapped(dynamodb, **{
        name: (lambda call: lambda **kw: calls.append((call, lease_key(kw)))
               or getattr(dynamodb, call)(**kw))(name)
        for name in ("put_item", "delete_item")})
    reports = []
    copier = threading.Thread(target=lambda: reports.append(worker.copy(
        f"{source.host}/{repo_name}:s", "mirror/small:s")), daemon=True)
    copier.start()
    copier.join(timeout=30)
    assert reports and reports[0].status == "copied" and reports[0].blobs_uploaded == 2
    # No lease taken or given back for the layer or the config (only the tag's).
    assert calls == [("put_item", "mirror/small:s"), ("delete_item", "mirror/small:s")]
    assert_mirrored(ecr, "mirror/small", "s", image)
