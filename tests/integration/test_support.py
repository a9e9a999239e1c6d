"""Sanity tests of ecr_mirror_testing against the real docker-registry binary."""

from __future__ import annotations

import hashlib

import pytest
import requests

from ecr_mirror_testing import images
from ecr_mirror_testing.images import (
    ATTESTATION_DIGEST_KEY,
    ATTESTATION_TYPE_KEY,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IN_TOTO_LAYER,
    OCI_INDEX,
    OCI_MANIFEST,
    get_manifest,
    layer_bytes,
    make_foreign_layer_image,
    make_image,
    make_index,
    push_blob,
)
from ecr_mirror_testing.proxy import classify
from ecr_mirror_testing.registry import MISSING_BINARY, LocalRegistry

pytestmark = pytest.mark.integration

PLATFORMS = [("linux", "amd64", None), ("linux", "arm64", "v8")]


# `registry` (the real distribution registry, one per session) comes from conftest.py.
@pytest.fixture
def proxy(source):
    """conftest's counting proxy, under the name these tests use."""
    return source


@pytest.fixture
def http():
    with requests.Session() as s:
        s.trust_env = False
        yield s


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_roundtrip(base_url: str, image: images.PushedImage) -> requests.Response:
    resp = get_manifest(base_url, image.repo, image.ref)
    assert resp.status_code == 200
    assert resp.content == image.raw
    assert resp.headers["Docker-Content-Digest"] == image.digest == sha(image.raw)
    assert resp.headers["Content-Type"] == image.media_type
    return resp


# -- registry + images ---------------------------------------------------------
def test_registry_attributes(registry, http):
    assert registry.host.startswith("127.0.0.1:") and registry.url == f"http://{registry.host}"
    assert http.get(registry.url + "/v2/").status_code == 200
    assert registry.root.is_dir()


@pytest.mark.parametrize("oci", [False, True])
def test_image_roundtrip(registry, http, oci):
    layers = [layer_bytes("base", 5000), layer_bytes("top", 300)]
    image = make_image(registry.url, "lib/app", f"v1-{oci}", layers=layers, oci=oci)
    assert_roundtrip(registry.url, image)
    assert image.media_type == (OCI_MANIFEST if oci else DOCKER_MANIFEST)
    manifest = image.json
    assert [layer["digest"] for layer in manifest["layers"]] == image.blobs[1:]
    assert manifest["config"]["digest"] == image.blobs[0]
    config = http.get(f"{registry.url}/v2/lib/app/blobs/{image.blobs[0]}").json()
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["rootfs"]["diff_ids"] == [sha(layer) for layer in layers]
    for digest, data in zip(image.blobs[1:], layers, strict=True):
        assert http.get(f"{registry.url}/v2/lib/app/blobs/{digest}").content == data
    # by digest too; HEAD answers the digest without a body
    assert get_manifest(registry.url, "lib/app", image.digest).content == image.raw
    head = http.head(f"{registry.url}/v2/lib/app/manifests/{image.ref}", headers={"Accept": images.MANIFEST_ACCEPT})
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert int(head.headers["Content-Length"]) == image.size


def test_oci_index_with_attestations(registry):
    index = make_index(registry.url, "lib/multi", "1.0", platforms=PLATFORMS, shared_base=layer_bytes("base", 2048))
    assert_roundtrip(registry.url, index)
    assert index.media_type == OCI_INDEX
    descriptors = index.json["manifests"]
    assert len(descriptors) == len(index.children) == 4
    for i, platform in enumerate(PLATFORMS):
        image, att = index.children[2 * i], index.children[2 * i + 1]
        d_image, d_att = descriptors[2 * i], descriptors[2 * i + 1]
        assert d_image["digest"] == image.digest and d_image["platform"]["architecture"] == platform[1]
        assert d_att["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert d_att["annotations"] == {
            ATTESTATION_TYPE_KEY: "attestation-manifest",
            ATTESTATION_DIGEST_KEY: image.digest,
        }
        assert att.attestation_for == image.digest
        assert att.json["config"]["mediaType"] == images.OCI_CONFIG
        assert [layer["mediaType"] for layer in att.json["layers"]] == [IN_TOTO_LAYER]
        for child in (image, att):
            assert child.ref == child.digest
            assert_roundtrip(registry.url, child)
    # the shared base layer is the same blob in every platform image
    assert index.children[0].blobs[1] == index.children[2].blobs[1]
    assert len(index.all_blobs()) == 2 * 4 - 1 + 2 * 2  # configs+layers, base once, attestation blobs


def test_manifest_list(registry):
    index = make_index(registry.url, "lib/multi", "docker", platforms=PLATFORMS, oci=False, layers_per_image=1)
    assert_roundtrip(registry.url, index)
    assert index.media_type == DOCKER_MANIFEST_LIST
    assert [c.media_type for c in index.children] == [DOCKER_MANIFEST, DOCKER_MANIFEST]
    assert [d["mediaType"] for d in index.json["manifests"]] == [DOCKER_MANIFEST, DOCKER_MANIFEST]


def test_foreign_layer_image_is_accepted_without_its_blob(registry, http):
    image = make_foreign_layer_image(registry.url, "win/app", "ltsc")
    assert_roundtrip(registry.url, image)
    foreign = image.json["layers"][0]
    assert foreign["mediaType"] == images.DOCKER_FOREIGN_LAYER and foreign["urls"]
    assert image.foreign == [foreign["digest"]] and foreign["digest"] not in image.blobs
    assert http.head(f"{registry.url}/v2/win/app/blobs/{foreign['digest']}").status_code == 404


def test_random_blob_stream(registry, http):
    size, chunk = 5 * (1 << 20) + 3, 1 << 20
    pieces = list(images.random_blob_chunks(size, seed=7, chunk=chunk))
    data = b"".join(pieces)
    assert len(data) == size and data == b"".join(images.random_blob_chunks(size, 7, chunk))
    assert len(set(pieces[:5])) == 5  # no repeated chunk
    assert data[: 2 * chunk] == b"".join(images.random_blob_chunks(2 * chunk, 7, chunk))
    digest = images.random_blob_digest(size, 7, chunk)
    assert digest == sha(data)
    assert images.push_random_blob(registry.url, "big/blob", size, 7, chunk) == digest
    assert http.get(f"{registry.url}/v2/big/blob/blobs/{digest}").content == data
    # already there: not uploaded again, the chunks are not consumed
    assert images.push_blob_stream(registry.url, "big/blob", iter(()), digest, size) == digest
    # written straight to storage: served like a pushed blob, in that repository only
    assert registry.write_blob("big/direct", iter(pieces)) == digest
    resp = http.get(f"{registry.url}/v2/big/direct/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert resp.status_code == 206 and resp.content == data[10:20]
    assert http.head(f"{registry.url}/v2/big/elsewhere/blobs/{digest}").status_code == 404


def test_corrupted_blob_is_served_with_a_wrong_digest(registry, http):
    data = layer_bytes("to-corrupt", 10_000)
    digest = push_blob(registry.url, "lib/corrupt", data)
    assert registry.blob_data_path(digest).read_bytes() == data
    registry.corrupt_blob(digest)
    got = http.get(f"{registry.url}/v2/lib/corrupt/blobs/{digest}").content
    assert len(got) == len(data) and sha(got) != digest


# -- proxy ----------------------------------------------------------------------
def test_classify():
    assert classify("/v2/a/b/manifests/latest") == ("manifest", None)
    assert classify("/v2/a/blobs/sha256:" + "0" * 64) == ("blob", "sha256:" + "0" * 64)
    assert classify("/v2/a/blobs/uploads/") == ("upload", None)
    assert classify("/v2/a/blobs/uploads/uuid?_state=x") == ("upload", None)
    assert classify("/v2/a/tags/list?n=10") == ("tags", None)
    assert classify("/v2/") == ("other", None)


def test_proxy_counts_and_forwards(registry, proxy, http):
    image = make_image(registry.url, "lib/counted", "t", layers=[layer_bytes("c", 3000)])
    assert_roundtrip(proxy.url, image)
    assert http.head(f"{proxy.url}/v2/lib/counted/manifests/t", headers={"Accept": image.media_type}).status_code == 200
    blob = http.get(f"{proxy.url}/v2/lib/counted/blobs/{image.blobs[1]}")
    assert blob.content == layer_bytes("c", 3000)
    tags = http.get(f"{proxy.url}/v2/lib/counted/tags/list")
    assert tags.json()["tags"] == ["t"]
    assert proxy.counts == {"GET manifest": 1, "HEAD manifest": 1, "GET blob": 1, "GET tags": 1}
    assert proxy.requests[0][:2] == ("GET", "/v2/lib/counted/manifests/t")
    # body bytes, by kind: what the benchmark reports as "read from the source"
    assert proxy.bytes_out["GET blob"] == 3000
    assert proxy.bytes_out["GET manifest"] == len(image.raw)
    assert proxy.bytes_out_total() == 3000 + len(image.raw) + len(tags.content) and proxy.bytes_in_total() == 0
    proxy.reset_counts()
    assert not proxy.counts and not proxy.requests and proxy.bytes_out_total() == 0


def test_proxy_upload_rewrites_location(proxy, registry):
    # POST / PUT through the proxy: the registry's absolute Location is rewritten
    data = layer_bytes("via-proxy", 70_000)
    digest = push_blob(proxy.url, "lib/up", data)
    assert proxy.counts["POST upload"] == 1 and proxy.counts["PUT upload"] == 1
    assert registry.blob_data_path(digest).read_bytes() == data
    # a chunked (streaming) request body is forwarded too
    size = 3 * (1 << 20) + 5
    digest = images.push_random_blob(proxy.url, "lib/up", size, seed="proxy", chunk=1 << 20)
    assert registry.blob_data_path(digest).stat().st_size == size
    # request bodies are counted as forwarded, whatever their framing
    assert proxy.bytes_in_total() == len(data) + size


def test_proxy_counts_only_the_bytes_a_dropped_blob_delivered(registry, proxy, http):
    data = layer_bytes("cut short", 2 * (1 << 20))
    digest = push_blob(registry.url, "lib/cut", data)
    proxy.drop_blob_once(digest, after_bytes=300_000)
    with pytest.raises(requests.exceptions.RequestException):
        with http.get(f"{proxy.url}/v2/lib/cut/blobs/{digest}", stream=True) as resp:
            for _ in resp.iter_content(100_000):
                pass
    assert proxy.bytes_out["GET blob"] == 300_000


def test_drop_blob_once_then_range_resume(registry, proxy, http):
    data = layer_bytes("dropped", 3 * (1 << 20) + 17)  # several proxy read chunks
    digest = push_blob(registry.url, "lib/drop", data)
    url = f"{proxy.url}/v2/lib/drop/blobs/{digest}"
    proxy.drop_blob_once(digest, after_bytes=100_000)

    received = bytearray()
    with pytest.raises(requests.exceptions.RequestException):
        with http.get(url, stream=True) as resp:
            assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == len(data)
            # a read that hits the cut loses its partial data: read in pieces
            # that divide after_bytes so exactly after_bytes arrive
            for piece in resp.iter_content(10_000):
                received += piece
    assert bytes(received) == data[:100_000]

    resp = http.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {len(received)}-{len(data) - 1}/{len(data)}"
    assert bytes(received) + resp.content == data
    assert proxy.requests[-1][2].get("Range") == "bytes=100000-"
    assert http.get(url).content == data  # only once
    assert proxy.counts["GET blob"] == 3


def test_proxy_fail_injection(registry, proxy, http):
    image = make_image(registry.url, "lib/limited", "t", layers=[layer_bytes("l", 100)])
    proxy.fail("GET manifest", 429, headers={"Retry-After": "1"})
    resp = get_manifest(proxy.url, "lib/limited", "t")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    assert resp.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert_roundtrip(proxy.url, image)
    assert proxy.counts["GET manifest"] == 2


# -- lifecycle ---------------------------------------------------------------------
def test_registry_stop_cleans_up(tmp_path):
    reg = LocalRegistry().start()
    proc, tmpdir = reg.proc, reg.tmpdir
    reg.stop()
    assert proc.poll() is not None and not tmpdir.exists()
    reg.stop()  # idempotent
    with LocalRegistry(root=tmp_path / "keep") as reg:
        push_blob(reg.url, "x/y", b"kept")
    assert (tmp_path / "keep" / "docker").is_dir()


def test_missing_binary_message(monkeypatch):
    import ecr_mirror_testing.registry as mod

    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(mod.os, "access", lambda *a: False)
    with pytest.raises(RuntimeError, match="docker-registry not found") as err:
        LocalRegistry()
    assert str(err.value) == MISSING_BINARY


def test_proxy_keeps_its_upstream_connection_when_asked(registry, http):
    """`keep_upstream` (make bench-scale): one upstream connection per client
    connection, answers and counts unchanged, and a kept connection the upstream
    closed meanwhile is replaced, the request answered as usual."""
    from ecr_mirror_testing.proxy import SourceProxy, shutdown_connections

    image = make_image(registry.url, "lib/kept", "t", layers=[layer_bytes("kept", 5000)])
    head = {"Accept": image.media_type}
    # The inner proxy stands for the upstream: it counts the connections made to it.
    with SourceProxy(registry.url) as upstream, SourceProxy(upstream.url, keep_upstream=True) as proxy:
        for _ in range(3):
            assert http.head(f"{proxy.url}/v2/lib/kept/manifests/t", headers=head).headers[
                "Docker-Content-Digest"] == image.digest
        assert http.get(f"{proxy.url}/v2/lib/kept/manifests/t", headers=head).content == image.raw
        assert http.get(f"{proxy.url}/v2/lib/kept/blobs/{image.blobs[1]}").content == layer_bytes("kept", 5000)
        assert upstream.connections_opened == 1  # five requests over one kept connection
        assert proxy.counts == {"HEAD manifest": 3, "GET manifest": 1, "GET blob": 1}

        shutdown_connections(upstream._lock, upstream._connections)  # the upstream drops it
        answer = http.head(f"{proxy.url}/v2/lib/kept/manifests/t", headers=head)
        assert answer.status_code == 200 and answer.headers["Docker-Content-Digest"] == image.digest
        assert upstream.connections_opened == 2 and proxy.counts["HEAD manifest"] == 4
