import json

import pytest

from ecr_mirror.errors import UnsupportedMediaType
from ecr_mirror.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    Platform,
    select_platforms,
    sha256_digest,
)


def desc(digest, os_="linux", arch="amd64", variant=None, attests=None):
    d = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 10,
         "platform": {"os": os_, "architecture": arch}}
    if variant:
        d["platform"]["variant"] = variant
    if attests:
        d["platform"] = {"os": "unknown", "architecture": "unknown"}
        d["annotations"] = {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": attests}
    return d


INDEX = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    desc("sha256:a"), desc("sha256:aa", attests="sha256:a"),
    desc("sha256:b", arch="arm64", variant="v8"), desc("sha256:bb", attests="sha256:b"),
    desc("sha256:c", arch="arm", variant="v7"),
]}


def test_raw_bytes_and_digest_are_kept_exactly():
    raw = b'{"schemaVersion":2,  "mediaType":"%s","manifests":[]}' % OCI_INDEX.encode()
    m = Manifest.from_bytes(raw, OCI_INDEX)
    assert m.raw == raw and m.digest == sha256_digest(raw) and m.text == raw.decode()


@pytest.mark.parametrize("header,body_type,expected", [
    (OCI_INDEX, None, OCI_INDEX),
    ("application/octet-stream", DOCKER_LIST, DOCKER_LIST),
    (f"{DOCKER_MANIFEST}; charset=utf-8", None, DOCKER_MANIFEST),
    (None, OCI_MANIFEST, OCI_MANIFEST),
])
def test_media_type_from_header_or_body(header, body_type, expected):
    # Valid as either kind: the media type alone decides which it is.
    body = {"schemaVersion": 2, "layers": [], "manifests": [], "config": {"digest": "sha256:x", "size": 1}}
    if body_type:
        body["mediaType"] = body_type
    assert Manifest.from_bytes(json.dumps(body).encode(), header).media_type == expected


@pytest.mark.parametrize("raw,header,needle", [
    (b'{"schemaVersion":1,"name":"x"}', "application/vnd.docker.distribution.manifest.v1+prettyjws",
     "schema 1"),
    (b'{"schemaVersion":2,"mediaType":"application/vnd.example+json"}', None,
     "application/vnd.example+json"),
])
def test_unsupported_manifests_name_the_image_and_type(raw, header, needle):
    with pytest.raises(UnsupportedMediaType) as err:
        Manifest.from_bytes(raw, header, image="docker.io/library/x:1")
    assert "docker.io/library/x:1" in str(err.value) and needle in str(err.value)


def test_foreign_layers_are_not_blobs_to_push():
    body = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"digest": "sha256:c", "size": 1},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                        "digest": "sha256:f", "size": 9, "urls": ["https://x"]},
                       {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                        "digest": "sha256:n", "size": 9},
                       {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": "sha256:l", "size": 9}]}
    m = Manifest.from_bytes(json.dumps(body).encode(), DOCKER_MANIFEST)
    assert [d["digest"] for d in m.blobs()] == ["sha256:c", "sha256:l"]
    assert len(m.foreign_layers()) == 2


@pytest.mark.parametrize("wanted,expected", [
    (["linux/amd64"], ["sha256:a", "sha256:aa"]),
    (["linux/arm64"], ["sha256:b", "sha256:bb"]),
    (["linux/arm64/v8", "linux/arm/v7"], ["sha256:b", "sha256:bb", "sha256:c"]),
    (["linux/arm/v6"], []),
    (["windows/amd64"], []),
])
def test_platform_selection_keeps_attestations_of_kept_images(wanted, expected):
    index = Manifest.from_bytes(json.dumps(INDEX).encode(), OCI_INDEX)
    chosen = select_platforms(index, [Platform.parse(w) for w in wanted])
    assert [d["digest"] for d in chosen] == expected


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_bad_platform_is_named(text):
    with pytest.raises(ValueError) as err:
        Platform.parse(text)
    assert f'"{text}"' in str(err.value) and "os/arch" in str(err.value)


BARE_IMAGE = {"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                              "digest": "sha256:e", "size": 2},
              "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "sha256:z",
                          "size": 9}]}
BARE_INDEX = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:m", "size": 3,
                                                 "artifactType": "application/spdx+json"}]}


@pytest.mark.parametrize("body,header,expected", [
    # Without a mediaType field the body's shape decides; the header only where it agrees.
    (BARE_INDEX, "application/json", OCI_INDEX),
    (BARE_INDEX, None, OCI_INDEX),
    (BARE_IMAGE, "application/octet-stream", OCI_MANIFEST),
    (BARE_IMAGE, OCI_INDEX, OCI_MANIFEST),
    (BARE_INDEX, OCI_MANIFEST, OCI_INDEX),
    (BARE_IMAGE, DOCKER_MANIFEST, DOCKER_MANIFEST),
    (BARE_INDEX, DOCKER_LIST, DOCKER_LIST),
    # With one, the body's own mediaType is what PutImage must be given (ECR checks they agree).
    ({**BARE_IMAGE, "mediaType": DOCKER_MANIFEST}, OCI_MANIFEST, DOCKER_MANIFEST),
])
def test_a_manifest_without_media_type_is_recognised_by_its_shape(body, header, expected):
    m = Manifest.from_bytes(json.dumps(body).encode(), header)
    assert m.media_type == expected
    assert m.is_index == (expected in (OCI_INDEX, DOCKER_LIST))


def test_an_artifact_lists_its_empty_config_and_zstd_layer_as_blobs():
    m = Manifest.from_bytes(json.dumps(BARE_IMAGE).encode(), OCI_MANIFEST)
    assert [(d["digest"], d["size"]) for d in m.blobs()] == [("sha256:e", 2), ("sha256:z", 9)]


def test_a_nested_index_without_a_platform_is_kept_whole_by_platform_selection():
    nested = {"mediaType": OCI_INDEX, "digest": "sha256:n", "size": 5}
    body = {**INDEX, "manifests": [*INDEX["manifests"], nested]}
    index = Manifest.from_bytes(json.dumps(body).encode(), OCI_INDEX)
    chosen = select_platforms(index, [Platform.parse("linux/arm64")])
    assert [d["digest"] for d in chosen] == ["sha256:b", "sha256:bb", "sha256:n"]
