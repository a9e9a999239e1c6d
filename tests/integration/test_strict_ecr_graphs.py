"""The strict ECR emulator with OCI 1.1 shapes: nested indexes, artifacts with the
empty config, `subject`, manifests without `mediaType`, zero-byte blobs. One test
per rule, through boto3 against in-process moto (fixtures of test_strict_ecr)."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_strict_ecr import (  # noqa: F401  (fixtures)
    OCI_INDEX,
    OCI_MANIFEST,
    REPO,
    aws_env,
    descriptor,
    ecr,
    push_blob,
    push_image,
    raw_ecr,
    sha256,
)

pytestmark = pytest.mark.integration

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/spdx+json"


def artifact(subject: dict | None = None, *, media_type_field: bool = True, **extra) -> str:
    body: dict = {"schemaVersion": 2}
    if media_type_field:
        body["mediaType"] = OCI_MANIFEST
    body |= {"artifactType": SBOM_TYPE, "config": descriptor(EMPTY_TYPE, b"{}"),
             "layers": [descriptor(SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}')], **extra}
    if subject is not None:
        body["subject"] = subject
    return json.dumps(body, indent=2)


def index_of(*children: tuple[str, str], media_type_field: bool = True) -> str:
    body: dict = {"schemaVersion": 2}
    if media_type_field:
        body["mediaType"] = OCI_INDEX
    body["manifests"] = [{"mediaType": t, "digest": sha256(m), "size": len(m.encode())} for m, t in children]
    return json.dumps(body, indent=1)


def put(client, manifest: str, media_type: str | None = None, tag: str | None = None) -> dict:
    kwargs = {"imageManifestMediaType": media_type} if media_type else {}
    if tag:
        kwargs["imageTag"] = tag
    return client.put_image(repositoryName=REPO, imageManifest=manifest, imageDigest=sha256(manifest), **kwargs)


def push_artifact_blobs(client) -> None:
    push_blob(client, b"{}")
    push_blob(client, b'{"spdxVersion": "SPDX-2.3"}')


def test_an_artifact_with_the_empty_config_needs_the_2_byte_blob(ecr):
    manifest = artifact()
    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        put(ecr, manifest, tag="sbom")
    push_artifact_blobs(ecr)
    put(ecr, manifest, tag="sbom")
    got = ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "sbom"}])["images"][0]
    assert got["imageManifest"] == manifest and got["imageId"]["imageDigest"] == sha256(manifest)


def test_a_subject_need_not_be_in_the_repository(ecr):
    """Assumption (no ECR document says otherwise): like the OCI distribution spec's
    registries, ECR takes a referrer pushed before its subject, or without it."""
    push_artifact_blobs(ecr)
    missing = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "size": 321}
    put(ecr, artifact(missing))
    image = push_image(ecr, "subject")
    put(ecr, artifact(descriptor(OCI_MANIFEST, image.encode())), tag="sbom")


@pytest.mark.parametrize("subject", [
    "sha256:" + "5" * 64,
    {"mediaType": OCI_MANIFEST, "size": 3},
    {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "size": "3"},
    {"digest": "sha256:" + "5" * 64, "size": 3},
])
def test_a_malformed_subject_is_invalid_parameter(ecr, subject):
    push_artifact_blobs(ecr)
    with pytest.raises(ecr.exceptions.InvalidParameterException) as err:
        put(ecr, artifact(subject))
    assert "subject" in str(err.value)


def test_a_manifest_without_media_type_needs_the_parameter(ecr):
    push_artifact_blobs(ecr)
    bare = artifact(media_type_field=False)
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        put(ecr, bare)
    assert put(ecr, bare, OCI_MANIFEST)["image"]["imageManifestMediaType"] == OCI_MANIFEST


def test_a_nested_index_needs_its_child_index_in_the_repository(ecr):
    image = push_image(ecr, "leaf")
    inner = index_of((image, OCI_MANIFEST), media_type_field=False)
    outer = index_of((inner, OCI_INDEX), (image, OCI_MANIFEST))
    with pytest.raises(ecr.exceptions.ReferencedImagesNotFoundException):
        put(ecr, outer, tag="top")
    put(ecr, inner, OCI_INDEX)
    put(ecr, outer, tag="top")
    got = ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "top"}])["images"][0]
    assert got["imageManifest"] == outer


def test_a_zero_byte_blob_cannot_be_uploaded_so_no_manifest_names_one(ecr):
    upload = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ecr.exceptions.EmptyUploadException):
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload, layerDigests=[sha256(b"")])
    push_blob(ecr, b"{}")
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(EMPTY_TYPE, b"{}"),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", b"")]}
    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        put(ecr, json.dumps(body))
