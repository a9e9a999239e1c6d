"""Every digest is checked against the OCI grammar before use and verified with the
algorithm it names (issue 9, finding 6)."""

from __future__ import annotations

import hashlib

import pytest

from ecr_mirror.errors import DigestMismatch, MirrorError
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror_testing.hostile import answer, client, fake_dns, image_manifest, local_ca, manifest, tls  # noqa: F401
from tests.integration.conftest import FAST_RETRY

pytestmark = pytest.mark.integration

CONFIG = b'{"architecture":"amd64","os":"linux"}'
TRAVERSAL = "sha256:x/../../../../v2/other/manifests/latest"


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def test_a_pinned_sha512_is_verified_with_sha512(tls, client):
    wanted, served = image_manifest(CONFIG, [b"good"])[0], image_manifest(CONFIG, [b"evil"])[0]
    tls.route("GET", r"/v2/app/manifests/sha512:.*", manifest(served))
    with pytest.raises(DigestMismatch, match="sha512"):
        client.get_manifest("app", sha512(wanted))

    tls.route("GET", r"/v2/app/manifests/sha512:.*", manifest(wanted))
    got = client.get_manifest("app", sha512(wanted))
    assert got.raw == wanted and got.digest == "sha256:" + hashlib.sha256(wanted).hexdigest()


def test_a_docker_content_digest_of_another_algorithm_is_verified(tls, client):
    raw, other = image_manifest(CONFIG, [b"good"])[0], image_manifest(CONFIG, [b"evil"])[0]
    tls.route("GET", r"/v2/app/manifests/1", manifest(raw, digest=sha512(other)))
    with pytest.raises(DigestMismatch, match="Docker-Content-Digest"):
        client.get_manifest("app", "1")


def test_a_pinned_sha512_copy_of_other_bytes_moves_no_tag(tls, local_ca, ecr, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", local_ca.pem)
    wanted, served = image_manifest(CONFIG, [b"good"])[0], image_manifest(CONFIG, [b"evil"])[0]
    tls.route("HEAD", r"/v2/app/manifests/.*", manifest(served))
    tls.route("GET", r"/v2/app/manifests/.*", manifest(served))
    settings = MirrorSettings(retry=FAST_RETRY, region="us-east-1",
                              registries={tls.netloc("registry.test"): SourceRegistry()})
    report = Mirror(settings, ecr_client=ecr).copy(
        f"{tls.netloc('registry.test')}/app:1@{sha512(wanted)}", "mirror/app")
    assert report.status == "failed" and report.error["type"] == "DigestMismatch"
    assert not tls.seen(path="/blobs/")  # nothing of the served image was fetched
    assert ecr.describe_repositories()["repositories"] == [] or not ecr.list_images(
        repositoryName="mirror/app")["imageIds"]


def test_an_unknown_algorithm_is_refused_before_any_request(tls, client):
    with pytest.raises(MirrorError, match="md5"):
        client.get_manifest("app", "md5:" + "a" * 32)
    assert tls.requests == []


@pytest.mark.parametrize("digest", [TRAVERSAL, "sha256:" + "A" * 64, "sha256:" + "a" * 63,
                                    "sha256:" + "a" * 64 + "\n", "sha512:" + "a" * 64])
def test_a_malformed_blob_digest_never_reaches_a_url(tls, client, digest):
    with pytest.raises(MirrorError), client.open_blob("app", digest, 10) as blob:
        blob.read(10)
    assert tls.requests == []


def test_a_malformed_digest_in_a_head_answer_is_refused(tls, client):
    tls.route("HEAD", r"/v2/app/manifests/1", answer(200, headers=[("Docker-Content-Digest", TRAVERSAL)]))
    with pytest.raises(MirrorError, match="digest"):
        client.head_manifest("app", "1")


def test_a_manifest_listing_a_malformed_layer_digest_fetches_nothing_else(tls, local_ca, ecr, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", local_ca.pem)
    raw, config_digest, _ = image_manifest(CONFIG, [TRAVERSAL])
    tls.route("HEAD", r"/v2/app/manifests/1", manifest(raw))
    tls.route("GET", r"/v2/app/manifests/.*", manifest(raw))
    tls.route("GET", rf"/v2/app/blobs/{config_digest}", answer(200, CONFIG, content_type=None))
    tls.route("GET", r"/v2/other/manifests/latest", answer(200, b"{}"))
    settings = MirrorSettings(retry=FAST_RETRY, region="us-east-1",
                              registries={tls.netloc("registry.test"): SourceRegistry()})
    report = Mirror(settings, ecr_client=ecr).copy(f"{tls.netloc('registry.test')}/app:1", "mirror/app")
    assert report.status == "failed" and "digest" in report.error["message"]
    assert report.error["temporary"] is False
    assert not tls.seen(path="/v2/other/")
