"""Any manifest graph, end to end: nested indexes, artifacts, manifests and
indexes without `mediaType`, uncompressed and zstd layers. The real distribution
registry is the source, ECR is emulated with ECR's rules; every manifest must
land byte for byte under its upstream digest, and a second run pulls nothing."""

from __future__ import annotations

import json

import pytest

from ecr_mirror.copy.graph import MAX_INDEX_DEPTH
from ecr_mirror_testing.artifacts import (
    EMPTY_CONFIG,
    EMPTY_TYPE,
    SBOM_TYPE,
    make_artifact,
    make_helm_chart,
    make_sbom,
    push_fallback_index,
)
from ecr_mirror_testing.graphs import (
    OCI_LAYER_ZSTD,
    make_build_tool_index,
    make_layered_image,
    make_nested_index,
    push_index,
    zstd_layer,
)
from ecr_mirror_testing.images import (
    OCI_INDEX,
    OCI_LAYER_UNCOMPRESSED,
    OCI_MANIFEST,
    PushedImage,
    _descriptor,
    _dumps,
    layer_bytes,
    make_image,
    push_manifest,
)
from tests.integration.conftest import ecr_image
from tests.integration.test_copy import assert_second_run_unchanged

pytestmark = pytest.mark.integration


def assert_graph_mirrored(ecr, repository: str, tag: str, top: PushedImage) -> None:
    """The tag names the upstream digest and every manifest of the graph is in ECR
    with its exact bytes and the media type it was served with."""
    assert ecr_image(ecr, repository, tag=tag)["imageId"]["imageDigest"] == top.digest
    for manifest in top.all_manifests():
        got = ecr_image(ecr, repository, digest=manifest.digest)
        assert got["imageManifest"].encode() == manifest.raw
        assert got["imageManifestMediaType"] == manifest.media_type
    for digest in top.all_blobs():
        held = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
        assert held["layers"] and not held["failures"], digest


def mirror_twice(copy, ecr, source, path: str, repository: str, top: PushedImage):
    """Copy `path` to `repository` under the same tag: copied byte-exact, then
    unchanged with no pull. Returns the first report."""
    tag = path.rsplit(":", 1)[1]
    report = copy(path, f"{repository}:{tag}")
    assert report.status == "copied", report.error
    assert_graph_mirrored(ecr, repository, tag, top)
    assert_second_run_unchanged(copy, source, path, f"{repository}:{tag}")
    return report


def manifests_of(top: PushedImage) -> int:
    return len({m.digest for m in top.all_manifests()})


@pytest.mark.parametrize("levels", [2, 3, MAX_INDEX_DEPTH])
def test_a_nested_index_is_copied_children_first_byte_exact(copy, ecr, source, registry, repo_name, levels):
    top = make_nested_index(registry.url, repo_name, "n", levels=levels)
    report = mirror_twice(copy, ecr, source, f"{repo_name}:n", "mirror/nested", top)

    assert report.source_digest == report.target_digest == top.digest
    assert report.manifests_fetched == report.manifests_put == manifests_of(top)


def test_a_multi_level_index_as_a_build_tool_publishes_it(copy, ecr, source, registry, repo_name):
    top = make_build_tool_index(registry.url, repo_name, "1.0")
    report = mirror_twice(copy, ecr, source, f"{repo_name}:1.0", "mirror/buildtool", top)

    assert report.manifests_put == manifests_of(top) == 1 + 2 + 4 + 2


def test_an_index_nested_past_the_limit_fails_naming_the_chain(copy, ecr, source, registry, repo_name):
    top = make_nested_index(registry.url, repo_name, "deep", levels=MAX_INDEX_DEPTH + 1)
    chain = [top.digest]
    node = top
    while node.children and node.children[0].media_type == OCI_INDEX:
        node = node.children[0]
        chain.append(node.digest)
    assert len(chain) == MAX_INDEX_DEPTH + 1

    report = copy(f"{repo_name}:deep", "mirror/deep:deep")

    assert report.status == "failed"
    assert report.error["type"] == "UnsupportedMediaType" and not report.error["temporary"]
    message = report.error["message"]
    assert repo_name in message and f"{MAX_INDEX_DEPTH} levels" in message
    assert " -> ".join(chain) in message  # the whole chain, top first
    fetched = [p for m, p, _ in source.requests if m == "GET" and "/manifests/" in p]
    assert not any(p.endswith(chain[-1]) for p in fetched)  # the index too deep is never pulled
    tags = ecr.describe_images(repositoryName="mirror/deep")["imageDetails"]
    assert not any(d.get("imageTags") for d in tags)


def test_an_artifact_with_the_empty_config_and_a_subject_not_in_ecr(copy, ecr, source, registry, repo_name):
    image = make_image(registry.url, repo_name, "img", layers=[layer_bytes(f"{repo_name}-img")], oci=True)
    sbom = _dumps({"spdxVersion": "SPDX-2.3", "name": repo_name})
    artifact = make_artifact(registry.url, repo_name, "sbom", artifact_type=SBOM_TYPE,
                             layers=[(SBOM_TYPE, sbom)], subject=image)
    assert artifact.json["config"] == {"mediaType": EMPTY_TYPE, "digest": artifact.blobs[0], "size": 2}

    report = copy(f"{repo_name}:sbom", "mirror/artifact:sbom")

    assert report.status == "copied", report.error
    assert report.bytes_uploaded == len(EMPTY_CONFIG) + len(sbom)
    assert_graph_mirrored(ecr, "mirror/artifact", "sbom", artifact)
    stored = json.loads(ecr_image(ecr, "mirror/artifact", tag="sbom")["imageManifest"])
    assert stored["subject"]["digest"] == image.digest and stored["artifactType"] == SBOM_TYPE
    assert_second_run_unchanged(copy, source, f"{repo_name}:sbom", "mirror/artifact:sbom")


def test_a_helm_chart_artifact_is_copied_under_its_tag(copy, ecr, source, registry, repo_name):
    chart = make_helm_chart(registry.url, repo_name, "1.0.0")
    report = mirror_twice(copy, ecr, source, f"{repo_name}:1.0.0", "mirror/charts", chart)

    assert report.media_type == OCI_MANIFEST and report.blobs_uploaded == 2


def test_a_manifest_without_media_type_is_put_with_the_type_it_was_served_as(
        copy, ecr, source, registry, repo_name):
    image = make_layered_image(registry.url, repo_name, "bare", [(OCI_LAYER_UNCOMPRESSED, layer_bytes(repo_name))],
                               media_type_field=False)
    assert "mediaType" not in image.json

    report = mirror_twice(copy, ecr, source, f"{repo_name}:bare", "mirror/bare", image)

    assert report.media_type == OCI_MANIFEST


def test_an_index_without_media_type_and_its_children_are_copied(copy, ecr, source, registry, repo_name):
    children = [make_image(registry.url, repo_name, None, oci=True, platform=p,
                           layers=[layer_bytes(f"{repo_name}-{p[1]}")])
                for p in (("linux", "amd64"), ("linux", "arm64"))]
    bare_child = make_layered_image(registry.url, repo_name, None, [(OCI_LAYER_ZSTD, zstd_layer(repo_name))],
                                    media_type_field=False)
    top = push_index(registry.url, repo_name, "idx", [*children, bare_child], media_type_field=False)
    assert "mediaType" not in top.json

    report = mirror_twice(copy, ecr, source, f"{repo_name}:idx", "mirror/bareidx", top)

    assert report.media_type == OCI_INDEX


def test_uncompressed_and_zstd_layers_are_copied(copy, ecr, source, registry, repo_name):
    layers = [(OCI_LAYER_UNCOMPRESSED, layer_bytes(f"{repo_name}-tar", 5000)),
              (OCI_LAYER_ZSTD, zstd_layer(f"{repo_name}-zst", 7000))]
    image = make_layered_image(registry.url, repo_name, "z", layers)
    report = mirror_twice(copy, ecr, source, f"{repo_name}:z", "mirror/zstd", image)

    assert report.blobs_uploaded == 3


def test_a_failed_nested_copy_is_retried_without_pulling_what_landed(copy, ecr, source, registry, repo_name):
    """Top index -> [index A, index B], each of two images with attestations. The
    second image of B has a corrupt layer: the copy fails with A and B's first
    image (and its attestation) in ECR. Once the blob is right again, the retry
    pulls the top index, B, and what of B did not land only."""
    a = make_build_tool_index(registry.url, repo_name, "a")  # any index of images
    b = make_nested_index(registry.url, repo_name, None, levels=1,
                          platforms=(("linux", "ppc64le", None), ("linux", "s390x", None)))
    top = push_index(registry.url, repo_name, "r", [a.children[0], b])
    index_a, (b1, b1_att, b2, b2_att) = a.children[0], b.children
    bad = b2.json["layers"][-1]["digest"]
    registry.corrupt_blob(bad)
    try:
        first = copy(f"{repo_name}:r", "mirror/retry:r", concurrency=1)
    finally:
        registry.corrupt_blob(bad)  # flipped back: the blob is right again
    assert first.status == "failed" and first.error["type"] == "DigestMismatch", first.error
    landed = {d["imageDigest"] for d in ecr.describe_images(repositoryName="mirror/retry")["imageDetails"]}
    assert {index_a.digest, b1.digest, b1_att.digest} <= landed
    assert not {b.digest, b2.digest, top.digest} & landed

    source.reset_counts()
    again = copy(f"{repo_name}:r", "mirror/retry:r", concurrency=1)

    assert again.status == "copied", again.error
    fetched = [p.rsplit("/", 1)[-1] for m, p, _ in source.requests if m == "GET" and "/manifests/" in p]
    # (B's last attestation may have been started before the failure stopped the rest.)
    expected = [top.digest, b.digest, b2.digest] + ([] if b2_att.digest in landed else [b2_att.digest])
    assert sorted(fetched) == sorted(expected)
    assert again.manifests_fetched == len(expected)
    assert_graph_mirrored(ecr, "mirror/retry", "r", top)


def _wrong_size_image(registry, repo: str, tag: str, layer: bytes, declared: int) -> PushedImage:
    """An OCI image whose one layer descriptor declares `declared` bytes for `layer`."""
    good = make_layered_image(registry.url, repo, None, [(OCI_LAYER_UNCOMPRESSED, layer)])
    body = good.json
    body["layers"][0] = _descriptor(OCI_LAYER_UNCOMPRESSED, body["layers"][0]["digest"], declared)
    raw = _dumps(body)
    digest = push_manifest(registry.url, repo, tag, raw, OCI_MANIFEST)
    return PushedImage(repo=repo, ref=tag, digest=digest, raw=raw, media_type=OCI_MANIFEST, blobs=good.blobs)


@pytest.mark.parametrize("delta", [+7, -7], ids=["declared-larger", "declared-smaller"])
def test_a_wrong_descriptor_size_is_refused_whether_or_not_ecr_has_the_blob(
        copy, ecr, registry, repo_name, delta):
    layer = layer_bytes(f"{repo_name}-sized", 9000)
    layer_digest = _descriptor("", layer)["digest"]
    _wrong_size_image(registry, repo_name, "bad", layer, len(layer) + delta)
    # The same layer, correctly described, already mirrored into the second repository.
    make_layered_image(registry.url, repo_name, "good", [(OCI_LAYER_UNCOMPRESSED, layer)])
    assert copy(f"{repo_name}:good", "mirror/sized-held:good").status == "copied"

    streamed = copy(f"{repo_name}:bad", "mirror/sized-new:bad")
    held = copy(f"{repo_name}:bad", "mirror/sized-held:bad")

    for report in (streamed, held):
        assert report.status == "failed", report
        assert report.error["type"] == "DigestMismatch" and not report.error["temporary"]
        message = report.error["message"]
        assert layer_digest in message
        assert str(len(layer)) in message and str(len(layer) + delta) in message
    assert "bad" not in {t for d in ecr.describe_images(repositoryName="mirror/sized-held")["imageDetails"]
                         for t in d.get("imageTags", [])}


def test_the_planner_estimates_a_nested_index_from_what_ecr_holds(copy, ecr, source, registry, repo_name):
    """The pull estimate of a changed nested index counts every manifest of the
    graph ECR holds for the tag (read from ECR, not pulled): the top index, each
    child, and the children of each child index, level by level."""
    from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
    from ecr_mirror.sync.config import load_config
    from ecr_mirror.sync.plan import build_plan
    from tests.integration.conftest import FAST_RETRY

    old = make_nested_index(registry.url, repo_name, "v", levels=3)
    assert copy(f"{repo_name}:v", "mirror/plan:v").status == "copied"
    make_nested_index(registry.url, repo_name, "v", levels=3, seed="moved")  # upstream moves on
    config = load_config(f"images:\n  - source: {source.host}/{repo_name}\n    target: mirror/plan\n"
                         "    tags: [v]\n")
    settings = MirrorSettings(retry=FAST_RETRY, region="us-east-1",
                              registries={source.host: SourceRegistry(insecure=True)})
    source.reset_counts()

    plan = build_plan(config, Mirror(settings, ecr_client=ecr))

    assert [job.cost for job in plan.jobs] == [manifests_of(old)]  # 1 + 2 + 2 + 4 = 9
    assert source.counts["GET manifest"] == 0


def test_platform_selection_keeps_a_nested_index_whole(copy, ecr, source, registry, repo_name):
    """--platform picks among the top index's children; a child index (no platform
    of its own) is kept whole and byte-exact, its digest intact."""
    nested = make_nested_index(registry.url, repo_name, None, levels=1)
    s390x = make_image(registry.url, repo_name, None, oci=True, platform=("linux", "s390x", None),
                       layers=[layer_bytes(f"{repo_name}-s390x")])
    amd64 = make_image(registry.url, repo_name, None, oci=True, platform=("linux", "amd64", None),
                       layers=[layer_bytes(f"{repo_name}-amd64")])
    top = push_index(registry.url, repo_name, "p", [s390x, nested, amd64])

    report = copy(f"{repo_name}:p", "mirror/subnest:p", platforms=["linux/amd64"])

    assert report.status == "copied", report.error
    written = json.loads(ecr_image(ecr, "mirror/subnest", tag="p")["imageManifest"])
    assert [d["digest"] for d in written["manifests"]] == [nested.digest, amd64.digest]
    for manifest in [*nested.all_manifests(), amd64]:
        assert ecr_image(ecr, "mirror/subnest", digest=manifest.digest)["imageManifest"].encode() == manifest.raw
    assert top.digest in report.digest_note


@pytest.mark.parametrize("wrong_first", [False, True], ids=["right-size-first", "wrong-size-first"])
def test_two_children_declaring_one_blob_with_two_sizes_fail_in_any_order(copy, ecr, registry, repo_name,
                                                                         wrong_first):
    """Two images of an index share a layer; one declares its size wrong. Whichever
    is copied first, the copy fails the same way and moves no tag."""
    layer = layer_bytes(f"{repo_name}-shared", 6000)
    right = make_layered_image(registry.url, repo_name, None, [(OCI_LAYER_UNCOMPRESSED, layer)])
    wrong = _wrong_size_image(registry, repo_name, "wrong", layer, len(layer) + 3)
    wrong.platform = ("linux", "arm64", None)
    top = push_index(registry.url, repo_name, "two", [wrong, right] if wrong_first else [right, wrong])

    report = copy(f"{repo_name}:two", "mirror/twosizes:two", concurrency=1)

    assert report.status == "failed"
    assert report.error["type"] == "DigestMismatch" and not report.error["temporary"]
    assert _descriptor("", layer)["digest"] in report.error["message"]
    assert top.digest not in {d["imageDigest"] for d in
                              ecr.describe_images(repositoryName="mirror/twosizes")["imageDetails"]}


def test_one_manifest_listing_a_blob_twice_with_two_sizes_fails(copy, ecr, registry, repo_name):
    layer = layer_bytes(f"{repo_name}-twice", 5000)
    good = make_layered_image(registry.url, repo_name, None, [(OCI_LAYER_UNCOMPRESSED, layer)] * 2)
    body = good.json
    body["layers"][0] = _descriptor(OCI_LAYER_UNCOMPRESSED, body["layers"][0]["digest"], len(layer) - 1)
    push_manifest(registry.url, repo_name, "twice", _dumps(body), OCI_MANIFEST)

    report = copy(f"{repo_name}:twice", "mirror/twice:twice")

    assert report.status == "failed" and report.error["type"] == "DigestMismatch", report.error
    assert str(len(layer)) in report.error["message"] and str(len(layer) - 1) in report.error["message"]


def test_the_deadline_reaches_the_threads_of_a_nested_index(source, ecr, registry, repo_name):
    """The children of a child index run in a pool of their own: their blob waits
    answer to the copy's deadline too, and the copy defers with nothing tagged."""
    from tests.integration.test_deadline import FakeClock, copy_with_deadline, tags

    make_nested_index(registry.url, repo_name, "late", levels=3)
    source.fail("GET blob", 503, headers={"Retry-After": "2"}, times=1000)
    clock = FakeClock(left=30)

    report = copy_with_deadline(source, ecr, f"{repo_name}:late", "mirror/late:late", clock,
                                margin=10, concurrency=2)

    assert report.status == "deferred" and report.error["type"] == "Deferred", report.error
    assert 2 in clock.sleeps and clock.slept <= 20
    assert tags(ecr, "mirror/late") == []


def test_an_index_of_artifacts_is_copied_as_any_index(copy, ecr, source, registry, repo_name):
    """The referrers tag schema's index (tag sha256-<hex>) lists artifacts with
    their artifactType; copied by its tag it is an index like any other."""
    image = make_image(registry.url, repo_name, "img", layers=[layer_bytes(f"{repo_name}-img")], oci=True)
    sboms = [make_sbom(registry.url, repo_name, image, seed=s) for s in ("one", "two")]
    fallback = push_fallback_index(registry.url, repo_name, image.digest, sboms)
    fallback.children = sboms
    assert all(d["artifactType"] == SBOM_TYPE for d in fallback.json["manifests"])

    mirror_twice(copy, ecr, source, f"{repo_name}:{fallback.ref}", "mirror/fallback", fallback)
