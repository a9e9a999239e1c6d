"""Referrers travel with the image (issue 12, items 2 and 3).

The referrers API path runs against `ReferrersProxy` (our test server in front
of the real distribution registry, which itself has no referrers API); the
fallback tag path (`sha256-<hex>` index, cosign's `.sig/.att/.sbom` tags) runs
against the real registry through the counting proxy. ECR is the strict emulator.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ecr_mirror.copy.options import ReferrerPolicy
from ecr_mirror.copy.referrers import COSIGN_TAGS
from ecr_mirror.ecr import RepositorySettings
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.registry import RegistryClient
from ecr_mirror.sync import build_plan, load_config
from ecr_mirror_testing.artifacts import (
    SBOM_TYPE,
    make_artifact,
    make_sbom,
    push_fallback_index,
    subject_tag,
)
from ecr_mirror_testing.ecr_referrers import EcrReferrers
from ecr_mirror_testing.images import OCI_CONFIG, layer_bytes, make_image, make_index, push_manifest
from ecr_mirror_testing.outputs import validated
from ecr_mirror_testing.referrers_api import ReferrersProxy
from ecr_mirror_testing.retry import FAST_RETRY
from tests.integration.conftest import copier, ecr_image

pytestmark = pytest.mark.integration

SIG_TYPE = COSIGN_TAGS[".sig"]
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ALL = ReferrerPolicy()
PULL_LIMIT_BODY = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your '
                   b'unauthenticated pull rate limit"}]}')


@pytest.fixture
def api_source(registry):
    """A source with the referrers API, 2 descriptors a page (so listings page)."""
    with ReferrersProxy(registry.url, page_size=2) as proxy:
        yield proxy


def signature(base_url: str, repo: str, subject, *, tag: str | None = None, seed: str = "sig"):
    """A cosign-like signature (fake signature bytes): as a referrer of `subject`,
    or (with `tag`) as cosign's legacy `.sig` tag, which has no `subject`."""
    payload = (b'{"critical":{"image":{"docker-manifest-digest":"%s"}},"seed":"%s"}'
               % (subject.digest.encode(), seed.encode()))
    layer = (SIMPLESIGNING, payload, {"dev.cosignproject.cosign/signature": f"fake-{seed}"})
    if tag:
        return make_artifact(base_url, repo, tag, artifact_type=None, config_type=OCI_CONFIG,
                             config=b'{"seed":"%s"}' % seed.encode(), layers=[layer])
    return make_artifact(base_url, repo, None, artifact_type=SIG_TYPE, layers=[layer], subject=subject)


def in_ecr(ecr, repository: str, pushed) -> None:
    """ECR holds the exact bytes (so any `subject` still names the mirrored digest)."""
    assert ecr_image(ecr, repository, digest=pushed.digest)["imageManifest"] == pushed.raw.decode()


def statuses(report) -> dict[str, str]:
    return {e["digest"] + (" " + e["tag"] if "tag" in e else ""): e["status"] for e in report.referrers}


def test_an_sbom_and_its_signature_travel_by_the_api_and_a_warm_run_pulls_nothing(api_source, ecr):
    url, repo = api_source.url, "team/api"
    image = make_image(url, repo, "1.0", layers=[layer_bytes("api-image")], oci=True)
    sboms = [make_sbom(url, repo, image, seed=f"sbom{i}") for i in range(3)]  # 2 pages
    signed = signature(url, repo, sboms[0])  # a signature of an SBOM: found recursively
    copy = copier(api_source, ecr)

    report = copy(f"{repo}:1.0", "mirror/api:1.0", referrers=ALL)

    assert report.status == "copied", report.error
    for pushed in (image, *sboms, signed):
        in_ecr(ecr, "mirror/api", pushed)
    assert ecr_image(ecr, "mirror/api", tag="1.0")["imageId"]["imageDigest"] == image.digest
    assert report.referrers_copied == 4 and report.referrers_unchanged == 0
    assert {e["digest"]: e["subject"] for e in report.referrers} == {
        **{s.digest: image.digest for s in sboms}, signed.digest: sboms[0].digest}
    assert api_source.counts["GET manifest"] == 1 + 4  # the image and each referrer, once

    api_source.reset_counts()
    again = copy(f"{repo}:1.0", "mirror/api:1.0", referrers=ALL)

    assert again.status == "unchanged", again.error
    assert api_source.counts["GET manifest"] == 0 and again.manifests_fetched == 0
    assert again.referrers_unchanged == 4 and again.referrers_copied == 0
    assert set(statuses(again).values()) == {"unchanged"}


def mirrored_then_an_sbom(api_source, ecr, name: str):
    """An image copied with its (no) referrers, then an SBOM added upstream:
    (copy, the image's path, its ECR target, the SBOM)."""
    path, target = f"team/{name}:1.0", f"mirror/{name}:1.0"
    image = make_image(api_source.url, f"team/{name}", "1.0", layers=[layer_bytes(name)], oci=True)
    copy = copier(api_source, ecr)
    assert copy(path, target, referrers=ALL).status == "copied"
    return copy, path, target, make_sbom(api_source.url, f"team/{name}", image, seed=name)


def test_a_new_referrer_upstream_is_copied_while_the_image_stays_unchanged(api_source, ecr):
    copy, path, target, sbom = mirrored_then_an_sbom(api_source, ecr, "later")
    api_source.reset_counts()
    report = copy(path, target, referrers=ALL)

    assert report.status == "unchanged", report.error
    in_ecr(ecr, "mirror/later", sbom)
    assert statuses(report) == {sbom.digest: "copied"}
    assert api_source.counts["GET manifest"] == 1  # the new SBOM only


def test_the_referrers_of_each_child_of_an_index_travel(api_source, ecr):
    url, repo = api_source.url, "team/multi"
    index = make_index(url, repo, "2.0", platforms=[("linux", "amd64", None), ("linux", "arm64", None)])
    platform_images = [c for c in index.children if c.attestation_for is None]
    sboms = [make_sbom(url, repo, child, seed=f"child {i}") for i, child in enumerate(platform_images)]
    index_sig = signature(url, repo, index)

    report = copier(api_source, ecr)(f"{repo}:2.0", "mirror/multi:2.0", referrers=ALL)

    assert report.status == "copied", report.error
    for pushed in (*sboms, index_sig):
        in_ecr(ecr, "mirror/multi", pushed)
    assert {e["subject"] for e in report.referrers} == {index.digest, *(c.digest for c in platform_images)}


def test_the_artifact_type_filter_copies_only_what_is_wanted(api_source, ecr):
    url, repo = api_source.url, "team/filter"
    image = make_image(url, repo, "1.0", layers=[layer_bytes("filter-image")], oci=True)
    sbom = make_sbom(url, repo, image)
    sig = signature(url, repo, image)

    report = copier(api_source, ecr)(f"{repo}:1.0", "mirror/filter:1.0",
                                     referrers=ReferrerPolicy((SIG_TYPE,)))

    assert report.status == "copied", report.error
    in_ecr(ecr, "mirror/filter", sig)
    assert not ecr.batch_get_image(repositoryName="mirror/filter",
                                   imageIds=[{"imageDigest": sbom.digest}])["images"]
    assert statuses(report) == {sig.digest: "copied", sbom.digest: "skipped"}
    skipped = next(e for e in report.referrers if e["status"] == "skipped")
    assert SBOM_TYPE in skipped["reason"] and report.referrers_skipped == 1
    validated("copyReport", report.as_dict())


def test_fallback_tags_and_cosign_tags_are_mirrored_as_tags(source, registry, ecr):
    """The real registry (no referrers API): the `sha256-<hex>` index of a child and
    of the index, and cosign's legacy `.sig/.att/.sbom` tags, land in ECR as tags."""
    repo = "team/fallback"
    index = make_index(registry.url, repo, "3.0", platforms=[("linux", "amd64", None)])
    child = index.children[0]
    child_sbom = make_sbom(registry.url, repo, child, seed="child")
    child_list = push_fallback_index(registry.url, repo, child.digest, [child_sbom])
    sbom_sig = signature(registry.url, repo, child_sbom, seed="of the sbom")  # signature of the SBOM
    sbom_list = push_fallback_index(registry.url, repo, child_sbom.digest, [sbom_sig])
    legacy = {suffix: signature(registry.url, repo, index, tag=subject_tag(index.digest, suffix),
                                seed=suffix) for suffix in (".sig", ".att", ".sbom")}
    copy = copier(source, ecr)

    report = copy(f"{repo}:3.0", "mirror/fallback:3.0", referrers=ALL)

    assert report.status == "copied", report.error
    for pushed in (child_sbom, sbom_sig, child_list, sbom_list, *legacy.values()):
        in_ecr(ecr, "mirror/fallback", pushed)
    for pushed in (child_list, sbom_list, *legacy.values()):
        assert ecr_image(ecr, "mirror/fallback", tag=pushed.ref)["imageId"]["imageDigest"] == pushed.digest
    assert source.counts["GET tags"] == 1  # one listing finds every fallback tag of the copy
    assert report.referrers_copied == 2 + 2 + 3  # 2 referrers, 2 fallback indexes, 3 cosign tags
    validated("copyReport", report.as_dict())  # docs/schema/output.schema.json

    source.reset_counts()
    again = copy(f"{repo}:3.0", "mirror/fallback:3.0", referrers=ALL)

    assert again.status == "unchanged", again.error
    assert source.counts["GET manifest"] == 0 and again.referrers_copied == 0
    assert again.referrers_unchanged == report.referrers_copied


def test_a_moved_fallback_tag_is_copied_again_on_an_unchanged_image(source, registry, ecr):
    repo = "team/moved"
    image = make_image(registry.url, repo, "1.0", layers=[layer_bytes("moved-image")], oci=True)
    first = make_sbom(registry.url, repo, image, seed="first")
    push_fallback_index(registry.url, repo, image.digest, [first])
    copy = copier(source, ecr)
    assert copy(f"{repo}:1.0", "mirror/moved:1.0", referrers=ALL).status == "copied"

    second = make_sbom(registry.url, repo, image, seed="second")
    moved = push_fallback_index(registry.url, repo, image.digest, [first, second])
    source.reset_counts()
    report = copy(f"{repo}:1.0", "mirror/moved:1.0", referrers=ALL)

    assert report.status == "unchanged", report.error
    in_ecr(ecr, "mirror/moved", second)
    assert ecr_image(ecr, "mirror/moved", tag=moved.ref)["imageId"]["imageDigest"] == moved.digest
    assert source.counts["GET manifest"] == 2  # the new list and the new SBOM; not the first SBOM


def test_a_referrer_that_hits_the_pull_limit_defers_the_image(api_source, ecr):
    copy, path, target, sbom = mirrored_then_an_sbom(api_source, ecr, "limited")
    api_source.fail_manifest(sbom.digest, 429, PULL_LIMIT_BODY, times=5)
    report = copy(path, target, referrers=ALL)

    assert report.status == "deferred" and report.error["type"] == "RateLimited"
    assert not ecr.batch_get_image(repositoryName="mirror/limited",
                                   imageIds=[{"imageDigest": sbom.digest}])["images"]
    api_source.fail_manifest(sbom.digest, 429, PULL_LIMIT_BODY, times=0)
    assert copy(path, target, referrers=ALL).referrers_copied == 1


def mirrored_then_a_signed_version(api_source, ecr, name: str):
    """v1 copied; then upstream's tag moves to a signed v2: (copy, path, target,
    the digest the ECR tag holds, v2's signature)."""
    path, target = f"team/{name}:1.0", f"mirror/{name}:1.0"
    make_image(api_source.url, f"team/{name}", "1.0", layers=[layer_bytes(f"{name} v1")], oci=True)
    copy = copier(api_source, ecr)
    old = copy(path, target, referrers=ALL).target_digest
    new = make_image(api_source.url, f"team/{name}", "1.0", layers=[layer_bytes(f"{name} v2")], oci=True)
    return copy, path, target, old, signature(api_source.url, f"team/{name}", new)


def test_a_referrer_that_cannot_be_fetched_leaves_the_tag_where_it_was(api_source, ecr):
    """The signature must be in ECR no later than the tag: a deferred referrer keeps
    the new image untagged."""
    copy, path, target, old, sig = mirrored_then_a_signed_version(api_source, ecr, "order")
    api_source.fail_manifest(sig.digest, 429, PULL_LIMIT_BODY, times=5)

    report = copy(path, target, referrers=ALL)

    assert report.status == "deferred", report.error
    assert ecr_image(ecr, "mirror/order", tag="1.0")["imageId"]["imageDigest"] == old


def plan_with_referrers(source, ecr, repo: str, target: str, tags: list[str]):
    """The planner over one config entry with referrers on (the config key comes
    with the plumbing work: the entry's `referrers` is set here)."""
    config = load_config(json.dumps({"images": [{"source": f"{source.host}/{repo}", "target": target,
                                                 "tags": tags}]}))
    config.images = [replace(e, referrers=ALL) for e in config.images]
    settings = MirrorSettings(prefix="mirror", retry=FAST_RETRY, region="us-east-1",
                              registries={source.host: SourceRegistry(insecure=True)})
    return build_plan(config, Mirror(settings, ecr_client=ecr))


def test_the_planner_queues_an_unchanged_image_only_when_referrers_are_missing(api_source, ecr):
    url, repo = api_source.url, "team/plan"
    image = make_image(url, repo, "1.0", layers=[layer_bytes("plan-1")], oci=True)
    make_image(url, repo, "1.1", layers=[layer_bytes("plan-2")], oci=True)
    copy = copier(api_source, ecr)
    for tag in ("1.0", "1.1"):
        assert copy(f"{repo}:{tag}", f"mirror/plan:{tag}", referrers=ALL).status == "copied"

    api_source.reset_counts()
    quiet = plan_with_referrers(api_source, ecr, repo, "mirror/plan", ["1.0", "1.1"])
    assert quiet.jobs == [] and len(quiet.unchanged) == 2, quiet.errors

    sbom = make_sbom(url, repo, image, seed="plan")
    signature(url, repo, sbom)  # the SBOM's signature: a second pull
    plan = plan_with_referrers(api_source, ecr, repo, "mirror/plan", ["1.0", "1.1"])

    assert [(j.target, j.cost) for j in plan.jobs] == [("mirror/plan:1.0", 2)]
    assert [u["target"] for u in plan.unchanged] == ["mirror/plan:1.1"]
    assert api_source.counts["GET manifest"] == 0  # planning pulls nothing


def test_the_pull_estimate_of_a_changed_image_includes_its_referrers(api_source, ecr):
    url, repo = api_source.url, "team/estimate"
    image = make_image(url, repo, "1.0", layers=[layer_bytes("estimate")], oci=True)
    for i in range(3):
        make_sbom(url, repo, image, seed=f"estimate {i}")

    plan = plan_with_referrers(api_source, ecr, repo, "mirror/estimate", ["1.0"])

    assert [j.cost for j in plan.jobs] == [1 + 3]


def test_ecr_lists_the_copied_referrers_of_the_mirrored_digest(api_source, ecr):
    """What `cosign tree` / `oras discover` would see in ECR: its referrers API lists
    the signature and the SBOM under the mirrored digest, and filters by type."""
    url, repo = api_source.url, "team/listed"
    image = make_image(url, repo, "1.0", layers=[layer_bytes("listed")], oci=True)
    sbom, sig = make_sbom(url, repo, image), signature(url, repo, image)
    assert copier(api_source, ecr)(f"{repo}:1.0", "mirror/listed:1.0", referrers=ALL).status == "copied"

    with EcrReferrers() as registry_endpoint:
        ecr_registry = RegistryClient(registry_endpoint.host, insecure=True)
        listed = ecr_registry.list_referrers("mirror/listed", image.digest)
        signatures = ecr_registry.list_referrers("mirror/listed", image.digest, artifact_type=SIG_TYPE)

    assert {d["digest"]: d.get("artifactType") for d in listed or []} == {
        sbom.digest: SBOM_TYPE, sig.digest: SIG_TYPE}
    assert [d["digest"] for d in signatures or []] == [sig.digest]


def test_a_fallback_tag_that_cannot_move_in_a_tag_immutable_repository_is_reported(source, registry, ecr):
    """ECR refuses to move a tag of an IMMUTABLE repository: the new referrer still
    lands (by digest), the image is not failed for it, and the report says why the
    fallback tag stayed."""
    repo = "team/immutable"
    image = make_image(registry.url, repo, "1.0", layers=[layer_bytes("immutable")], oci=True)
    first = make_sbom(registry.url, repo, image, seed="first")
    push_fallback_index(registry.url, repo, image.digest, [first])
    copy = copier(source, ecr)
    immutable = RepositorySettings(tag_mutability="IMMUTABLE")
    assert copy(f"{repo}:1.0", "mirror/immutable:1.0", referrers=ALL, repository=immutable).status == "copied"
    second = make_sbom(registry.url, repo, image, seed="second")
    moved = push_fallback_index(registry.url, repo, image.digest, [first, second])

    report = copy(f"{repo}:1.0", "mirror/immutable:1.0", referrers=ALL, repository=immutable)

    assert report.status == "unchanged", report.error
    in_ecr(ecr, "mirror/immutable", second)
    stayed = next(e for e in report.referrers if e.get("tag") == moved.ref)
    assert stayed["status"] == "skipped" and "immutable" in stayed["reason"]

    source.reset_counts()  # the list is in ECR by digest now: it is not pulled again
    again = copy(f"{repo}:1.0", "mirror/immutable:1.0", referrers=ALL, repository=immutable)
    assert again.status == "unchanged" and source.counts["GET manifest"] == 0, again.error


def test_a_pinned_index_already_in_ecr_still_gets_new_referrers_of_its_children(api_source, ecr):
    url, repo = api_source.url, "team/pinned"
    index = make_index(url, repo, None, platforms=[("linux", "amd64", None)])
    copy = copier(api_source, ecr)
    first = copy(f"{repo}@{index.digest}", "mirror/pinned", referrers=ALL)
    assert first.status == "copied", first.error
    sbom = make_sbom(url, repo, index.children[0], seed="pinned child")

    report = copy(f"{repo}@{index.digest}", "mirror/pinned", referrers=ALL)

    assert report.status == "unchanged", report.error
    in_ecr(ecr, "mirror/pinned", sbom)
    assert api_source.counts["GET manifest"] == 1 + len(index.children) + 1  # the first copy; then the SBOM only


def test_the_planner_counts_a_moved_fallback_index_and_its_new_referrer(source, registry, ecr):
    repo = "team/plan-fallback"
    image = make_image(registry.url, repo, "1.0", layers=[layer_bytes("plan-fallback")], oci=True)
    first = make_sbom(registry.url, repo, image, seed="first")
    push_fallback_index(registry.url, repo, image.digest, [first])
    assert copier(source, ecr)(f"{repo}:1.0", "mirror/plan-fallback:1.0", referrers=ALL).status == "copied"
    push_fallback_index(registry.url, repo, image.digest,
                        [first, make_sbom(registry.url, repo, image, seed="second")])

    source.reset_counts()
    plan = plan_with_referrers(source, ecr, repo, "mirror/plan-fallback", ["1.0"])

    # What the copy then pulls: the new list and the new SBOM (see the test of a moved tag above).
    assert [j.cost for j in plan.jobs] == [2] and source.counts["GET manifest"] == 0


def test_ecr_look_ups_do_not_grow_with_the_other_signed_images_of_the_repository(source, registry, ecr):
    """Every signed image adds fallback tags to the repository's listing; a copy
    asks ECR only about the tags of its own manifests."""
    copy = copier(source, ecr)

    def ecr_reads(repo: str, others: int) -> int:
        image = make_image(registry.url, repo, "1.0", layers=[layer_bytes(repo)], oci=True)
        signature(registry.url, repo, image, tag=subject_tag(image.digest, ".sig"))
        other = signature(registry.url, repo, image, tag="unrelated", seed="other")
        for i in range(others):  # the same bytes under the tags of other images
            push_manifest(registry.url, repo, f"sha256-{i:064x}.sig", other.raw, other.media_type)
        report = copy(f"{repo}:1.0", f"mirror/{repo}:1.0", referrers=ALL)
        assert report.status == "copied" and report.referrers_copied == 1, report.error
        return report.requests["ecr:BatchGetImage"]

    assert ecr_reads("team/few", 0) == ecr_reads("team/many", 250)


def test_a_fallback_tag_never_goes_back_to_an_older_list(registry, ecr):
    """Upstream's `sha256-<hex>` list moves while a copy holds the older one: the
    copy leaves the ECR tag to the copy of the newer list."""
    repo = "team/race"
    with ReferrersProxy(registry.url) as source:
        image = make_image(registry.url, repo, "1.0", layers=[layer_bytes("race")], oci=True)
        first = make_sbom(registry.url, repo, image, seed="first")
        older = push_fallback_index(registry.url, repo, image.digest, [first])
        source.after_get(older.digest, lambda: push_fallback_index(
            registry.url, repo, image.digest, [first, make_sbom(registry.url, repo, image, seed="2nd")]))

        report = copier(source, ecr)(f"{repo}:1.0", "mirror/race:1.0", referrers=ALL)

    assert report.status == "copied", report.error
    in_ecr(ecr, "mirror/race", first)
    assert not ecr.batch_get_image(repositoryName="mirror/race", imageIds=[{"imageTag": older.ref}])["images"]
    stayed = next(e for e in report.referrers if e.get("tag") == older.ref)
    assert stayed["status"] == "skipped" and "moved" in stayed["reason"]


def test_time_running_out_at_a_referrer_defers_the_image_untagged(api_source, ecr):
    copy, path, target, old, sig = mirrored_then_a_signed_version(api_source, ecr, "late")
    seconds_left = [600.0]  # the Lambda's remaining time, run out once the signature is fetched
    api_source.after_get(sig.digest, lambda: seconds_left.__setitem__(0, 1.0))

    report = copy(path, target, referrers=ALL, time_left=lambda: seconds_left[0])

    assert report.status == "deferred" and report.error["type"] == "Deferred", report.error
    assert ecr_image(ecr, "mirror/late", tag="1.0")["imageId"]["imageDigest"] == old
    assert not ecr.batch_get_image(repositoryName="mirror/late", imageIds=[{"imageDigest": sig.digest}])["images"]
