"""The signature gate end to end: images in the real distribution registry signed in the
test the way cosign signs them (`ecr_mirror_testing.cosign`: keys made here, the legacy
`.sig` tag, OCI 1.1 referrers listed in the fallback index, since Debian's distribution
2.8 has no referrers API), copied into the strict ECR emulator with a `VerifyPolicy`.

An image moves only if a signature over its exact digest verifies with a trusted key;
otherwise it is `rejected`, the ECR tag keeps the older image, and nothing of the new
one is in ECR."""

from __future__ import annotations

import json

import pytest

from ecr_mirror.copy.options import VerifyPolicy
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.signatures import MAX_SIGNATURE_BYTES, MAX_SIGNATURE_MANIFESTS, SIGNATURE_ARTIFACT
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.artifacts import descriptor_of, make_sbom, subject_tag
from ecr_mirror_testing.cosign import Signer, list_referrers, payload
from ecr_mirror_testing.images import OCI_INDEX, layer_bytes, make_image, make_index, push_manifest
from ecr_mirror_testing.outputs import validated
from ecr_mirror_testing.retry import FAST_RETRY
from tests.integration.conftest import ecr_image

pytestmark = pytest.mark.integration

TARGET = "mirror/signed"


@pytest.fixture(scope="module")
def signer():
    return Signer.generate()


@pytest.fixture
def gated(source, ecr):
    """copy(path, target, keys) through the real Mirror with the gate on."""

    def run(path: str, target: str, keys: list[Signer], origin: str = "cosign.pub"):
        settings = MirrorSettings(prefix="mirror", concurrency=4, retry=FAST_RETRY, region="us-east-1",
                                  registries={source.host: SourceRegistry(insecure=True)})
        policy = VerifyPolicy(tuple(k.public_pem for k in keys), origin=origin)
        report = Mirror(settings, ecr_client=ecr).copy(f"{source.host}/{path}", target, verify=policy)
        validated("copyReport", report.as_dict())
        return report

    return run


def image(registry, repo: str, tag: str, seed: str):
    return make_image(registry.url, repo, tag, oci=True, layers=[layer_bytes(f"{repo}-{seed}")])


def in_ecr(ecr, digest: str) -> bool:
    try:
        found = ecr.batch_get_image(repositoryName=TARGET, imageIds=[{"imageDigest": digest}])
    except ecr.exceptions.RepositoryNotFoundException:
        return False
    return bool(found["images"])


def test_signed_in_the_legacy_sig_tag_is_copied_and_a_second_run_pulls_nothing(
        gated, ecr, source, registry, repo_name, signer):
    img = image(registry, repo_name, "1.0", "legacy")
    signer.push_sig_tag(registry.url, repo_name, img.digest)
    report = gated(f"{repo_name}:1.0", f"{TARGET}:1.0", [signer])

    assert report.status == "copied", report.error or report.rejected_reason
    assert report.target_digest == img.digest and report.rejected_reason is None
    assert ecr_image(ecr, TARGET, tag="1.0")["imageManifest"].encode() == img.raw
    # the signature's manifest and the image's: two counted pulls; the tag HEAD is free
    assert report.manifests_fetched == 2 and source.counts["HEAD manifest"] >= 2

    source.reset_counts()
    again = gated(f"{repo_name}:1.0", f"{TARGET}:1.0", [signer])
    assert again.status == "unchanged" and source.counts["GET manifest"] == 0


@pytest.mark.parametrize("form", ["simple-signing", "sigstore-bundle"])
def test_signed_as_a_referrer_found_through_the_fallback_index_is_copied(
        gated, ecr, source, registry, repo_name, signer, form):
    img = image(registry, repo_name, "2.0", form)
    make = signer.referrer if form == "simple-signing" else signer.bundle_referrer
    list_referrers(registry.url, repo_name, img, [make(registry.url, repo_name, img)])
    report = gated(f"{repo_name}:2.0", f"{TARGET}:2.0", [signer])

    assert report.status == "copied", report.error or report.rejected_reason
    assert ecr_image(ecr, TARGET, tag="2.0")["imageId"]["imageDigest"] == img.digest
    assert source.counts["GET referrers"] == 1  # asked, answered 404: the fallback tag was read
    # the fallback index, the referrer, the image
    assert report.manifests_fetched == 3


def _unsigned(registry, repo, new, signer):
    """Nothing signs the new image (the old one's signature is still there)."""


def _other_key(registry, repo, new, signer):
    Signer.generate().push_sig_tag(registry.url, repo, new.digest)


def _other_digest(registry, repo, new, signer):
    """A valid signature of another image, stored under this image's `.sig` tag."""
    other = image(registry, repo, "other", "other")
    signer.push_sig_tag(registry.url, repo, other.digest, tag_for=new.digest)


def _tampered(registry, repo, new, signer):
    """The payload edited to name this image, the signature of another payload kept."""
    honest = signer.sign(payload("sha256:" + "0" * 64, repo))
    signer.push_sig_tag(registry.url, repo, new.digest, signature=honest)


def _malformed(registry, repo, new, signer):
    signer.push_sig_tag(registry.url, repo, new.digest, payload_bytes=b"not json",
                        signature=signer.sign(b"not json"))


@pytest.mark.parametrize("setup, reason", [
    (_unsigned, "no signature found"),
    (_other_key, "signed by another key"),
    (_other_digest, "signed over another digest"),
    (_tampered, "signed by another key"),
    (_malformed, "malformed signature"),
], ids=["unsigned", "another-key", "another-digest", "tampered-payload", "malformed"])
def test_a_new_image_without_a_valid_signature_is_rejected_and_the_tag_keeps_the_old_one(
        gated, ecr, source, registry, repo_name, signer, setup, reason):
    old = image(registry, repo_name, "1.0", "old")
    signer.push_sig_tag(registry.url, repo_name, old.digest)
    assert gated(f"{repo_name}:1.0", f"{TARGET}:1.0", [signer]).status == "copied"

    new = image(registry, repo_name, "1.0", "new")  # upstream's tag moves to an image not signed so
    setup(registry, repo_name, new, signer)
    strict_ecr.reset_calls()
    source.reset_counts()
    report = gated(f"{repo_name}:1.0", f"{TARGET}:1.0", [signer])

    assert report.status == "rejected", report.error
    assert report.rejected_reason.startswith(reason), report.rejected_reason
    assert ("cosign.pub" in report.rejected_reason) is (reason != "no signature found")
    assert report.summary().startswith(f"REJECTED {source.host}/{repo_name}:1.0 -> {TARGET}:1.0: {reason}")
    assert ecr_image(ecr, TARGET, tag="1.0")["imageId"]["imageDigest"] == old.digest
    assert not in_ecr(ecr, new.digest)
    assert report.blobs_uploaded == 0 and report.manifests_put == 0
    assert strict_ecr.calls["PutImage"] == 0 and strict_ecr.calls["InitiateLayerUpload"] == 0
    assert source.counts["GET blob"] <= 1  # at most the signature's payload, never a layer


def test_an_index_is_verified_by_the_index_digest_not_a_child(gated, ecr, registry, repo_name, signer):
    index = make_index(registry.url, repo_name, "multi",
                       platforms=[("linux", "amd64", None), ("linux", "arm64", None)])
    signer.push_sig_tag(registry.url, repo_name, index.children[0].digest)  # a child only
    report = gated(f"{repo_name}:multi", f"{TARGET}:multi", [signer])
    assert report.status == "rejected"
    assert report.rejected_reason.startswith(f"no signature found for {index.digest}")
    assert not in_ecr(ecr, index.children[0].digest)

    signer.push_sig_tag(registry.url, repo_name, index.digest)
    report = gated(f"{repo_name}:multi", f"{TARGET}:multi", [signer])
    assert report.status == "copied", report.error or report.rejected_reason
    assert ecr_image(ecr, TARGET, tag="multi")["imageManifest"].encode() == index.raw
    assert all(in_ecr(ecr, child.digest) for child in index.children)


def test_a_429_while_looking_signatures_up_defers_the_image(gated, ecr, source, registry, repo_name, signer):
    img = image(registry, repo_name, "3.0", "limited")
    sig = signer.push_sig_tag(registry.url, repo_name, img.digest)
    source.fail("GET manifest", 429, headers={"ratelimit-limit": "100;w=21600",
                                              "ratelimit-remaining": "0;w=21600"},
                body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your '
                     b'unauthenticated pull rate limit."}]}')
    report = gated(f"{repo_name}:3.0", f"{TARGET}:3.0", [signer])

    assert report.status == "deferred", (report.status, report.error, report.rejected_reason)
    assert report.rejected_reason is None
    # the signature manifest's GET met the 429; the image itself was not pulled
    gets = [path for method, path, _ in source.requests if method == "GET" and "/manifests/" in path]
    assert gets == [f"/v2/{repo_name}/manifests/{sig.digest}"]
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_images(repositoryName=TARGET)

    report = gated(f"{repo_name}:3.0", f"{TARGET}:3.0", [signer])  # a later run, the 429 gone
    assert report.status == "copied", report.error or report.rejected_reason


@pytest.mark.parametrize("signed_by", ["old", "new"])
def test_key_rotation_an_image_signed_by_either_trusted_key_is_copied(
        gated, ecr, registry, repo_name, signer, signed_by):
    new_key = Signer.generate("ecdsa")
    img = image(registry, repo_name, "4.0", signed_by)
    (signer if signed_by == "old" else new_key).push_sig_tag(registry.url, repo_name, img.digest)
    report = gated(f"{repo_name}:4.0", f"{TARGET}:4.0", [signer, new_key], origin="keys/")
    assert report.status == "copied", report.error or report.rejected_reason
    # and with only the other key trusted, the same image is rejected
    other = new_key if signed_by == "old" else signer
    refused = gated(f"{repo_name}:4.0", f"{TARGET}:4.1", [other])
    assert refused.status == "rejected" and refused.rejected_reason.startswith("signed by another key")


def test_a_payload_larger_than_the_bound_is_not_read(gated, source, registry, repo_name, signer):
    img = image(registry, repo_name, "5.0", "big")
    huge = payload(img.digest, repo_name) + b" " * MAX_SIGNATURE_BYTES
    signer.push_sig_tag(registry.url, repo_name, img.digest, payload_bytes=huge, signature=signer.sign(huge))
    report = gated(f"{repo_name}:5.0", f"{TARGET}:5.0", [signer])
    assert report.status == "rejected"
    assert report.rejected_reason.startswith("malformed signature") and "more than" in report.rejected_reason
    assert source.counts["GET blob"] == 0


def test_signature_look_ups_are_bounded_and_the_reason_says_so(gated, source, registry, repo_name, signer):
    img = image(registry, repo_name, "6.0", "many")
    stranger = Signer.generate()
    list_referrers(registry.url, repo_name, img, [stranger.referrer(registry.url, repo_name, img)
                                                  for _ in range(MAX_SIGNATURE_MANIFESTS + 3)])
    source.reset_counts()
    report = gated(f"{repo_name}:6.0", f"{TARGET}:6.0", [signer])
    assert report.status == "rejected"
    assert report.rejected_reason.startswith("signed by another key")
    assert f"only the first {MAX_SIGNATURE_MANIFESTS}" in report.rejected_reason
    assert report.manifests_fetched == MAX_SIGNATURE_MANIFESTS  # the fallback index counts as one


def test_a_signature_listed_by_the_referrers_api_is_found(gated, ecr, source, registry, repo_name, signer):
    """distribution 2.8 has no referrers API: here the proxy answers it (a server of
    ours), listing an SBOM (not fetched: not a signature) and the signature, which is
    pushed by digest only and in no fallback index."""
    img = image(registry, repo_name, "7.0", "api")
    sbom = make_sbom(registry.url, repo_name, img)
    sig = signer.referrer(registry.url, repo_name, img)
    listing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": [descriptor_of(sbom), descriptor_of(sig)]}).encode()
    source.fail("GET referrers", 200, headers={"Content-Type": OCI_INDEX}, body=listing)
    report = gated(f"{repo_name}:7.0", f"{TARGET}:7.0", [signer])

    assert report.status == "copied", report.error or report.rejected_reason
    gets = [path for method, path, _ in source.requests if method == "GET" and "/manifests/" in path]
    assert gets == [f"/v2/{repo_name}/manifests/{sig.digest}", f"/v2/{repo_name}/manifests/{img.digest}"]
    assert not any(path.endswith(subject_tag(img.digest)) for _, path, _ in source.requests)

    # the same registry answering 404 and with no fallback index: nothing signs it
    refused = gated(f"{repo_name}:7.0", f"{TARGET}:7.1", [signer])
    assert refused.status == "rejected" and refused.rejected_reason.startswith("no signature found")


def test_a_signature_both_tagged_and_listed_is_pulled_once(gated, source, registry, repo_name, signer):
    img = image(registry, repo_name, "8.0", "twice")
    sig = Signer.generate().referrer(registry.url, repo_name, img)
    push_manifest(registry.url, repo_name, subject_tag(img.digest, ".sig"), sig.raw, sig.media_type)
    list_referrers(registry.url, repo_name, img, [sig])
    source.reset_counts()
    report = gated(f"{repo_name}:8.0", f"{TARGET}:8.0", [signer])
    assert report.status == "rejected" and report.rejected_reason.startswith("signed by another key")
    gets = [path for method, path, _ in source.requests if method == "GET" and "/manifests/" in path]
    assert gets.count(f"/v2/{repo_name}/manifests/{sig.digest}") == 1
    assert "other signature" not in report.rejected_reason  # one signature, said once


def test_a_referrers_listing_with_a_bad_digest_rejects_without_a_request_for_it(
        gated, source, registry, repo_name, signer):
    image(registry, repo_name, "9.0", "bad-digest")
    listing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": "sha256:../../../v2/_catalog", "size": 2,
         "artifactType": SIGNATURE_ARTIFACT}]}).encode()
    source.fail("GET referrers", 200, headers={"Content-Type": OCI_INDEX}, body=listing)
    report = gated(f"{repo_name}:9.0", f"{TARGET}:9.0", [signer])
    assert report.status == "rejected", report.error
    assert report.rejected_reason.startswith("malformed signature") and "not a digest" in report.rejected_reason
    assert not any("_catalog" in path for _, path, _ in source.requests)
