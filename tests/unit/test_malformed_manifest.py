"""A manifest that is not what it should be is refused when it is parsed, with a
typed error naming the image and the field: never a raw UnicodeDecodeError,
AttributeError, KeyError or ValueError later in the copy."""

from __future__ import annotations

import json

import pytest

from ecr_mirror.errors import InvalidManifest, MirrorError
from ecr_mirror.manifest import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Manifest

IMAGE = "docker.io/library/x:1"
GOOD_DIGEST = "sha256:" + "a" * 64


def descriptor(**fields):
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": GOOD_DIGEST,
            "size": 12, **fields}


def image(**fields) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor()], **fields}


def index(**fields) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [descriptor(mediaType=OCI_MANIFEST,
                                     platform={"os": "linux", "architecture": "amd64"})], **fields}


def refused(raw: bytes, media_type: str | None = None) -> str:
    with pytest.raises(InvalidManifest) as err:
        Manifest.from_bytes(raw, media_type, image=IMAGE)
    assert isinstance(err.value, MirrorError) and err.value.temporary is False
    message = str(err.value)
    assert IMAGE in message and "\n" not in message
    return message


def test_the_well_formed_ones_still_parse():
    for body in (image(), index()):
        Manifest.from_bytes(json.dumps(body).encode(), body["mediaType"], image=IMAGE)


@pytest.mark.parametrize("raw", [
    json.dumps(image()).encode("utf-16"),                       # json.loads would decode it
    json.dumps(image()).encode("utf-16-le"),
    json.dumps(image(annotations={"a": "caf\u00e9"}), ensure_ascii=False).encode("latin-1"),
])
def test_a_manifest_that_is_not_utf8_is_refused(raw):
    assert "UTF-8" in refused(raw, OCI_MANIFEST)


@pytest.mark.parametrize("body,field", [
    (image(layers="sha256:abc"), "layers"),                          # a string, not a list
    (image(layers={"0": descriptor()}), "layers"),
    (image(config="sha256:abc"), "config"),
    (image(layers=[descriptor(), "sha256:abc"]), "layers[1]"),       # not an object
    (image(layers=[{"mediaType": "x", "size": 1}]), "layers[0].digest"),
    (image(layers=[descriptor(digest=5)]), "layers[0].digest"),
    (image(layers=[descriptor(size="12abc")]), "layers[0].size"),
    (image(layers=[descriptor(size=-1)]), "layers[0].size"),
    (image(layers=[descriptor(size=True)]), "layers[0].size"),
    (image(layers=[descriptor(size=1.5)]), "layers[0].size"),
    (image(layers=[descriptor(mediaType=7)]), "layers[0].mediaType"),
    (image(layers=[descriptor(urls="https://x")]), "layers[0].urls"),
    (image(layers=[descriptor(annotations=["a"])]), "layers[0].annotations"),
    (image(config={"digest": GOOD_DIGEST}), "config.size"),
    (index(manifests="nope"), "manifests"),
    (index(manifests={"a": 1}), "manifests"),
    (index(manifests=[None]), "manifests[0]"),
    (index(manifests=[descriptor(platform="linux/amd64")]), "manifests[0].platform"),
    (index(manifests=[descriptor(platform={"os": 1, "architecture": "amd64"})]), "manifests[0].platform"),
    (index(annotations="x"), "annotations"),
])
def test_a_malformed_field_is_named(body, field):
    message = refused(json.dumps(body).encode(), body["mediaType"])
    assert f"{field} " in message or f"{field}:" in message, message


def test_a_docker_manifest_without_config_is_refused():
    body = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": []}
    assert "config" in refused(json.dumps(body).encode(), DOCKER_MANIFEST)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"a string"'])
def test_a_manifest_that_is_not_a_json_object_is_refused(raw):
    assert "JSON" in refused(raw, OCI_MANIFEST)


def test_deeply_nested_json_is_refused():
    raw = b'{"schemaVersion": 2, "mediaType": "%s", "layers": %s%s}' % (
        OCI_MANIFEST.encode(), b"[" * 100_000, b"]" * 100_000)
    assert "JSON" in refused(raw, OCI_MANIFEST)


@pytest.mark.parametrize("text", ["linux/amd64\n", " linux/amd64", "linux/am d64", "Linux/AMD64",
                                  "linux/amd64/v8/x"])
def test_a_platform_is_validated_as_a_whole_string(text):
    from ecr_mirror.manifest import Platform

    with pytest.raises(ValueError) as err:
        Platform.parse(text)
    assert json.dumps(text) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("manifest", ['{"manifests": 5}', "[" * 100_000, '{"manifests": {"a": 1}}'])
def test_an_odd_index_already_in_ecr_only_changes_the_pull_estimate(manifest):
    """What ECR holds was pushed by anyone with access: the planner guesses, never crashes."""
    from ecr_mirror.ecr.target import TaggedImage
    from ecr_mirror.sync.plan import DEFAULT_INDEX_CHILDREN, _pull_cost

    current = TaggedImage(digest=GOOD_DIGEST, manifest=manifest, media_type=OCI_INDEX)
    assert _pull_cost(OCI_INDEX, current, ()) == 1 + DEFAULT_INDEX_CHILDREN


@pytest.mark.parametrize("value", [7, ["x"], {"a": 1}])
def test_a_media_type_field_that_is_not_a_string_is_refused(value):
    """ECR compares the field with the type PutImage is given: it must be a string."""
    assert "mediaType" in refused(json.dumps(image(mediaType=value)).encode(), OCI_MANIFEST)
