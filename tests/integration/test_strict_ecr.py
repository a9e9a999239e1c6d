"""The strict ECR emulator (testing/ecr_mirror_testing/strict_ecr.py) enforces real ECR's rules.

One test per rule, through boto3 against moto: in-process ``mock_aws`` for most,
plus moto's server mode in this process and as a separate process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import selectors
import subprocess
import sys

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from ecr_mirror_testing import strict_ecr as strict
from ecr_mirror_testing.ecr_server import start_server
from ecr_mirror_testing.strict_ecr import calls, reset_calls, strict_ecr

MiB = 1024 * 1024
REGION = "us-east-1"
REPO = "mirror/app"
ROOT = pathlib.Path(__file__).resolve().parents[2]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


# -- fixtures and helpers ---------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(strict.PART_SIZE_ENV, raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def ecr(aws_env):
    """A boto3 ECR client on strict in-process moto, with REPO created."""
    with mock_aws(), strict_ecr():
        reset_calls()
        client = boto3.client("ecr", region_name=REGION)
        client.create_repository(repositoryName=REPO)
        yield client


@pytest.fixture
def raw_ecr(ecr):
    """Same emulator, no client-side validation: the server has to refuse."""
    return boto3.client(
        "ecr", region_name=REGION, config=Config(parameter_validation=False)
    )


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client, data: bytes, repo: str = REPO, part_size: int = 5 * MiB) -> str:
    upload_id = client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    for first in range(0, len(data), part_size):
        part = data[first : first + part_size]
        client.upload_layer_part(
            repositoryName=repo,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    digest = sha256(data)
    answer = client.complete_layer_upload(
        repositoryName=repo, uploadId=upload_id, layerDigests=[digest]
    )
    assert answer["layerDigest"] == digest
    return digest


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def image_manifest(config: bytes, layers: list[bytes], extra_layers=(), oci=False) -> str:
    """A manifest in a spelling json.dumps(json.loads(...)) would not keep."""
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": descriptor(OCI_CONFIG if oci else DOCKER_CONFIG, config),
        "layers": [descriptor(OCI_LAYER if oci else DOCKER_LAYER, x) for x in layers]
        + list(extra_layers),
    }
    return json.dumps(body, indent=3) + "\n"


def index_manifest(children: list[str]) -> str:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(child),
                "size": len(child.encode()),
                "platform": {"architecture": arch, "os": "linux"},
            }
            for child, arch in zip(children, ["amd64", "arm64", "s390x"], strict=False)
        ],
    }
    return json.dumps(body, indent=2)


def push_image(client, seed: str, tag: str | None = None, repo: str = REPO) -> str:
    """Upload a small config + layer, put the manifest; return the manifest."""
    config = json.dumps({"architecture": "amd64", "seed": seed}).encode()
    layer = f"layer of {seed}".encode()
    push_blob(client, config, repo)
    push_blob(client, layer, repo)
    manifest = image_manifest(config, [layer], oci=True)
    kwargs = {"imageTag": tag} if tag else {}
    client.put_image(
        repositoryName=repo, imageManifest=manifest, imageDigest=sha256(manifest), **kwargs
    )
    return manifest


# -- happy path ---------------------------------------------------------------


def test_push_multi_part_layer_manifest_by_digest_and_tagged_index(ecr):
    layer = os.urandom(3 * 5 * MiB + 12345)  # 3 parts of 5 MiB + remainder
    config = b'{"architecture":"amd64","os":"linux"}'
    assert push_blob(ecr, layer) == sha256(layer)
    push_blob(ecr, config)
    assert calls["UploadLayerPart"] == 5  # 4 for the layer, 1 for the config

    available = ecr.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=[sha256(layer), sha256(config)]
    )
    assert available["failures"] == []
    assert {x["layerDigest"]: x["layerSize"] for x in available["layers"]} == {
        sha256(layer): len(layer),
        sha256(config): len(config),
    }

    child = image_manifest(config, [layer], oci=True)
    put = ecr.put_image(
        repositoryName=REPO, imageManifest=child, imageDigest=sha256(child)
    )
    assert put["image"]["imageId"] == {"imageDigest": sha256(child)}
    index = index_manifest([child])
    put = ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="1.0")
    assert put["image"]["imageId"] == {"imageDigest": sha256(index), "imageTag": "1.0"}

    got = ecr.batch_get_image(
        repositoryName=REPO,
        imageIds=[
            {"imageTag": "1.0"},
            {"imageDigest": sha256(child)},
            {"imageTag": "missing"},
        ],
    )
    by_digest = {i["imageId"]["imageDigest"]: i for i in got["images"]}
    assert by_digest[sha256(index)]["imageManifest"] == index  # exact bytes
    assert by_digest[sha256(index)]["imageManifestMediaType"] == OCI_INDEX
    assert by_digest[sha256(child)]["imageManifest"] == child
    assert got["failures"] == [
        {
            "imageId": {"imageTag": "missing"},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        }
    ]

    details = ecr.describe_images(repositoryName=REPO)["imageDetails"]
    assert {d["imageDigest"]: d.get("imageTags") for d in details} == {
        sha256(child): None,
        sha256(index): ["1.0"],
    }
    size = {d["imageDigest"]: d["imageSizeInBytes"] for d in details}
    assert size[sha256(child)] == len(layer)
    listed = ecr.list_images(repositoryName=REPO)["imageIds"]
    assert {i["imageDigest"] for i in listed} == {sha256(child), sha256(index)}


# -- InitiateLayerUpload ------------------------------------------------------


def test_part_size_defaults_to_10_mib_and_is_configurable(ecr, monkeypatch):
    assert ecr.initiate_layer_upload(repositoryName=REPO)["partSize"] == 10 * MiB
    monkeypatch.setenv(strict.PART_SIZE_ENV, str(6 * MiB))
    assert ecr.initiate_layer_upload(repositoryName=REPO)["partSize"] == 6 * MiB
    with strict_ecr(part_size=1 * MiB):
        assert ecr.initiate_layer_upload(repositoryName=REPO)["partSize"] == 1 * MiB
    assert strict.PART_SIZE is None and strict.is_enabled()


# -- UploadLayerPart ----------------------------------------------------------


def test_part_must_start_at_next_byte_and_reports_last_valid_byte(ecr):
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    part = os.urandom(5 * MiB)
    with pytest.raises(ecr.exceptions.InvalidLayerPartException) as excinfo:
        ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=1,
                              partLastByte=5, layerPartBlob=b"12345")
    assert excinfo.value.response["lastValidByteReceived"] == -1
    ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=0,
                          partLastByte=len(part) - 1, layerPartBlob=part)
    for wrong_first in (0, len(part) + 1):  # a replay, a gap
        with pytest.raises(ecr.exceptions.InvalidLayerPartException) as excinfo:
            ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id,
                                  partFirstByte=wrong_first,
                                  partLastByte=wrong_first + 2, layerPartBlob=b"abc")
        body = excinfo.value.response
        assert body["lastValidByteReceived"] == len(part) - 1
        assert body["uploadId"] == upload_id
        assert body["repositoryName"] == REPO
        assert body["registryId"] == "123456789012"
    # resume where ECR says it stopped
    resume = body["lastValidByteReceived"] + 1
    answer = ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id,
                                   partFirstByte=resume, partLastByte=resume + 2,
                                   layerPartBlob=b"abc")
    assert answer["lastByteReceived"] == len(part) + 2
    ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id,
                              layerDigests=[sha256(part + b"abc")])


def test_part_range_must_match_blob_length(ecr):
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ecr.exceptions.InvalidLayerPartException) as excinfo:
        ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=0,
                              partLastByte=9, layerPartBlob=b"12345")
    assert excinfo.value.response["lastValidByteReceived"] == -1


def test_part_over_20971520_bytes_is_refused(raw_ecr):
    upload_id = raw_ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    blob = bytes(strict.MAX_PART_SIZE + 1)
    with pytest.raises(raw_ecr.exceptions.InvalidLayerPartException):
        raw_ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id,
                                  partFirstByte=0, partLastByte=len(blob) - 1,
                                  layerPartBlob=blob)


def test_non_final_part_under_5_mib_is_refused_when_next_part_arrives(ecr):
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    small = os.urandom(5 * MiB - 1)
    ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=0,
                          partLastByte=len(small) - 1, layerPartBlob=small)
    with pytest.raises(ecr.exceptions.LayerPartTooSmallException):
        ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id,
                              partFirstByte=len(small), partLastByte=len(small),
                              layerPartBlob=b"x")
    # as the last part it was fine
    ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id,
                              layerDigests=[sha256(small)])


def test_unknown_upload_id(ecr):
    with pytest.raises(ecr.exceptions.UploadNotFoundException):
        ecr.upload_layer_part(repositoryName=REPO, uploadId="nope", partFirstByte=0,
                              partLastByte=0, layerPartBlob=b"x")
    with pytest.raises(ecr.exceptions.UploadNotFoundException):
        ecr.complete_layer_upload(repositoryName=REPO, uploadId="nope",
                                  layerDigests=[sha256(b"x")])


# -- CompleteLayerUpload ------------------------------------------------------


def test_complete_with_wrong_digest_is_invalid_layer(ecr):
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=0,
                          partLastByte=2, layerPartBlob=b"abc")
    with pytest.raises(ecr.exceptions.InvalidLayerException):
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id,
                                  layerDigests=[sha256(b"abd")])
    missing = ecr.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=[sha256(b"abc"), sha256(b"abd")]
    )
    assert missing["layers"] == []
    assert {f["failureCode"] for f in missing["failures"]} == {"MissingLayerDigest"}


def test_complete_without_bytes_is_empty_upload(ecr):
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ecr.exceptions.EmptyUploadException):
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id,
                                  layerDigests=[sha256(b"")])


def test_complete_existing_layer_is_layer_already_exists(ecr):
    push_blob(ecr, b"same bytes")
    with pytest.raises(ecr.exceptions.LayerAlreadyExistsException):
        push_blob(ecr, b"same bytes")


def test_layers_live_per_repository(ecr):
    ecr.create_repository(repositoryName="mirror/other")
    digest = push_blob(ecr, b"only in app")
    other = ecr.batch_check_layer_availability(
        repositoryName="mirror/other", layerDigests=[digest]
    )
    assert other["layers"] == [] and other["failures"][0]["layerDigest"] == digest


# -- BatchCheckLayerAvailability ----------------------------------------------


def test_batch_check_takes_1_to_100_digests(raw_ecr):
    digests = [sha256(str(i)) for i in range(101)]
    answer = raw_ecr.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=digests[:100]
    )
    assert len(answer["failures"]) == 100
    for wrong in (digests, []):
        with pytest.raises(raw_ecr.exceptions.InvalidParameterException):
            raw_ecr.batch_check_layer_availability(
                repositoryName=REPO, layerDigests=wrong
            )


# -- PutImage ------------------------------------------------------------------


def test_image_digest_must_match_manifest(ecr):
    config, layer = b"{}", b"layer"
    push_blob(ecr, config)
    push_blob(ecr, layer)
    manifest = image_manifest(config, [layer])
    canonical = json.dumps(json.loads(manifest), separators=(",", ":"))
    with pytest.raises(ecr.exceptions.ImageDigestDoesNotMatchException):
        ecr.put_image(repositoryName=REPO, imageManifest=manifest,
                      imageDigest=sha256(canonical), imageTag="v1")
    put = ecr.put_image(repositoryName=REPO, imageManifest=manifest,
                        imageDigest=sha256(manifest), imageTag="v1")
    assert put["image"]["imageId"]["imageDigest"] == sha256(manifest)
    assert put["image"]["imageManifestMediaType"] == DOCKER_MANIFEST


def test_manifest_over_4_mib_is_invalid_parameter(raw_ecr):
    config, layer = b"{}", b"layer"
    push_blob(raw_ecr, config)
    push_blob(raw_ecr, layer)
    body = json.loads(image_manifest(config, [layer]))
    body["annotations"] = {"padding": "x" * (4 * MiB)}
    with pytest.raises(raw_ecr.exceptions.InvalidParameterException):
        raw_ecr.put_image(repositoryName=REPO, imageManifest=json.dumps(body))


def test_manifest_needs_config_and_layers_in_this_repository(ecr):
    config, layer = b'{"os":"linux"}', b"layer bytes"
    manifest = image_manifest(config, [layer])
    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    push_blob(ecr, layer)
    with pytest.raises(ecr.exceptions.LayersNotFoundException):  # config missing
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    ecr.create_repository(repositoryName="mirror/other")
    push_blob(ecr, config, repo="mirror/other")  # wrong repository
    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    push_blob(ecr, config)
    ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")


def test_foreign_and_nondistributable_layers_are_not_required(ecr):
    config, layer = b'{"os":"windows"}', b"windows layer"
    push_blob(ecr, config)
    push_blob(ecr, layer)
    foreign = [
        {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "digest": sha256(b"base"), "size": 4, "urls": ["https://example.com/base"]},
        {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
         "digest": sha256(b"base2"), "size": 5, "urls": ["https://example.com/b2"]},
    ]
    manifest = image_manifest(config, [layer], extra_layers=foreign)
    ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="win")


def test_index_needs_every_child_in_this_repository(ecr):
    child_a = push_image(ecr, "a")  # pushed by digest, untagged
    config, layer = b'{"seed":"b"}', b"layer b"
    child_b = image_manifest(config, [layer], oci=True)  # never pushed
    index = index_manifest([child_a, child_b])
    with pytest.raises(ecr.exceptions.ReferencedImagesNotFoundException):
        ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="latest")
    push_blob(ecr, config)
    push_blob(ecr, layer)
    ecr.put_image(repositoryName=REPO, imageManifest=child_b)
    ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="latest")


def test_schema1_and_unknown_media_types_are_refused(ecr):
    schema1 = json.dumps({"schemaVersion": 1, "name": "library/x", "tag": "1",
                          "fsLayers": [], "history": []})
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_image(
            repositoryName=REPO, imageManifest=schema1, imageTag="old",
            imageManifestMediaType=SCHEMA1,
        )
    with pytest.raises(ecr.exceptions.InvalidParameterException):  # no media type
        ecr.put_image(repositoryName=REPO, imageManifest=schema1, imageTag="old")
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_image(repositoryName=REPO, imageManifest="{not json", imageTag="x")


def test_media_type_parameter_must_match_manifest(ecr):
    config, layer = b"{}", b"layer"
    push_blob(ecr, config)
    push_blob(ecr, layer)
    manifest = image_manifest(config, [layer])  # Docker v2 schema2
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1",
                      imageManifestMediaType=OCI_MANIFEST)
    # a manifest without mediaType takes the parameter
    body = json.loads(manifest)
    del body["mediaType"]
    bare = json.dumps(body)
    put = ecr.put_image(repositoryName=REPO, imageManifest=bare, imageTag="v2",
                        imageManifestMediaType=DOCKER_MANIFEST)
    assert put["image"]["imageManifestMediaType"] == DOCKER_MANIFEST


def test_same_manifest_with_same_tag_is_image_already_exists(ecr):
    manifest = push_image(ecr, "a", tag="v1")
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):  # by digest
        ecr.put_image(repositoryName=REPO, imageManifest=manifest)
    ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1.0")
    detail = ecr.describe_images(repositoryName=REPO)["imageDetails"]
    assert len(detail) == 1 and sorted(detail[0]["imageTags"]) == ["v1", "v1.0"]


def test_immutable_repository_refuses_to_move_a_tag(ecr):
    ecr.create_repository(repositoryName="mirror/fixed", imageTagMutability="IMMUTABLE")
    first = push_image(ecr, "a", tag="v1", repo="mirror/fixed")
    with pytest.raises(ecr.exceptions.ImageTagAlreadyExistsException):
        push_image(ecr, "b", tag="v1", repo="mirror/fixed")
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):  # no change
        ecr.put_image(repositoryName="mirror/fixed", imageManifest=first, imageTag="v1")
    got = ecr.batch_get_image(repositoryName="mirror/fixed", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == first


def test_mutable_repository_moves_the_tag_and_keeps_the_old_image(ecr):
    old = push_image(ecr, "a", tag="latest")
    new = push_image(ecr, "b", tag="latest")
    got = ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "latest"}])
    assert got["images"][0]["imageId"]["imageDigest"] == sha256(new)
    details = ecr.describe_images(repositoryName=REPO)["imageDetails"]
    assert {d["imageDigest"]: d.get("imageTags") for d in details} == {
        sha256(old): None,
        sha256(new): ["latest"],
    }
    untagged = ecr.list_images(repositoryName=REPO, filter={"tagStatus": "UNTAGGED"})
    assert untagged["imageIds"] == [{"imageDigest": sha256(old)}]


# -- BatchGetImage ------------------------------------------------------------


def test_batch_get_image_by_tag_and_digest(ecr):
    manifest = push_image(ecr, "a", tag="v1")
    got = ecr.batch_get_image(
        repositoryName=REPO,
        imageIds=[
            {"imageTag": "v1"},
            {"imageDigest": sha256(manifest)},
            {"imageDigest": sha256("other")},
            {"imageDigest": sha256(manifest), "imageTag": "v1"},
            {"imageDigest": sha256(manifest), "imageTag": "v2"},
        ],
    )
    assert [i["imageManifest"] for i in got["images"]] == [manifest] * 3
    assert [i["imageId"] for i in got["images"]] == [
        {"imageDigest": sha256(manifest), "imageTag": "v1"},
        {"imageDigest": sha256(manifest)},
        {"imageDigest": sha256(manifest), "imageTag": "v1"},
    ]
    assert got["failures"] == [
        {
            "imageId": {"imageDigest": sha256("other")},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        },
        {
            "imageId": {"imageDigest": sha256(manifest), "imageTag": "v2"},
            "failureCode": "ImageTagDoesNotMatchDigest",
            "failureReason": "Invalid request parameters: given tag does not map "
            "to the given digest",
        },
    ]
    described = ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "v1"}])
    assert described["imageDetails"][0]["imageDigest"] == sha256(manifest)
    assert described["imageDetails"][0]["artifactMediaType"] == OCI_CONFIG


# -- repositories ---------------------------------------------------------------


def test_repository_settings_are_kept(ecr):
    repo = ecr.create_repository(
        repositoryName="mirror/kms",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "alias/mirror"},
    )["repository"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS",
                                               "kmsKey": "alias/mirror"}
    default = ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert default["encryptionConfiguration"] == {"encryptionType": "AES256"}


def test_missing_repository_everywhere(ecr):
    missing = "mirror/missing"
    digest = sha256(b"x")
    calls_ = [
        lambda: ecr.initiate_layer_upload(repositoryName=missing),
        lambda: ecr.upload_layer_part(repositoryName=missing, uploadId="u",
                                      partFirstByte=0, partLastByte=0, layerPartBlob=b"x"),
        lambda: ecr.complete_layer_upload(repositoryName=missing, uploadId="u",
                                          layerDigests=[digest]),
        lambda: ecr.batch_check_layer_availability(repositoryName=missing,
                                                   layerDigests=[digest]),
        lambda: ecr.put_image(repositoryName=missing, imageManifest="{}", imageTag="x"),
        lambda: ecr.batch_get_image(repositoryName=missing, imageIds=[{"imageTag": "x"}]),
        lambda: ecr.describe_images(repositoryName=missing),
        lambda: ecr.list_images(repositoryName=missing),
    ]
    for call in calls_:
        with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
            call()


# -- module API -----------------------------------------------------------------


def test_call_counter(ecr):
    reset_calls()
    push_image(ecr, "a", tag="v1")
    assert calls["InitiateLayerUpload"] == 2
    assert calls["UploadLayerPart"] == 2
    assert calls["CompleteLayerUpload"] == 2
    assert calls["PutImage"] == 1
    reset_calls()
    assert sum(calls.values()) == 0


def test_enable_disable_are_idempotent_and_restore_moto(aws_env):
    was = strict.is_enabled()
    strict.disable()
    strict.disable()
    try:
        with mock_aws():
            client = boto3.client("ecr", region_name=REGION)
            client.create_repository(repositoryName=REPO)
            upload_id = client.initiate_layer_upload(repositoryName=REPO)["uploadId"]
            client.upload_layer_part(repositoryName=REPO, uploadId=upload_id,
                                     partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
            # plain moto accepts a wrong digest
            client.complete_layer_upload(repositoryName=REPO, uploadId=upload_id,
                                         layerDigests=[sha256(b"y")])
            strict.enable()
            strict.enable()
            with strict_ecr():  # nested: leaves it enabled
                pass
            assert strict.is_enabled()
            upload_id = client.initiate_layer_upload(repositoryName=REPO)["uploadId"]
            client.upload_layer_part(repositoryName=REPO, uploadId=upload_id,
                                     partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
            with pytest.raises(client.exceptions.InvalidLayerException):
                client.complete_layer_upload(repositoryName=REPO, uploadId=upload_id,
                                             layerDigests=[sha256(b"y")])
            strict.disable()
            assert not strict.is_enabled()
    finally:
        (strict.enable if was else strict.disable)()


# -- server mode ---------------------------------------------------------------


def _server_client(endpoint_url: str):
    return boto3.client(
        "ecr", region_name=REGION, endpoint_url=endpoint_url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def test_rules_apply_in_threaded_server_mode(aws_env):
    with strict_ecr(part_size=5 * MiB):
        server, endpoint_url = start_server()
        try:
            client = _server_client(endpoint_url)
            client.create_repository(repositoryName="server/app")
            upload = client.initiate_layer_upload(repositoryName="server/app")
            assert upload["partSize"] == 5 * MiB
            manifest = push_image(client, "server", tag="v1", repo="server/app")
            got = client.batch_get_image(repositoryName="server/app",
                                         imageIds=[{"imageTag": "v1"}])
            assert got["images"][0]["imageId"]["imageDigest"] == sha256(manifest)
            with pytest.raises(client.exceptions.InvalidLayerPartException) as excinfo:
                client.upload_layer_part(
                    repositoryName="server/app", uploadId=upload["uploadId"],
                    partFirstByte=7, partLastByte=7, layerPartBlob=b"x",
                )
            assert excinfo.value.response["lastValidByteReceived"] == -1
            with pytest.raises(client.exceptions.LayersNotFoundException):
                client.put_image(repositoryName="server/app", imageTag="v2",
                                 imageManifest=image_manifest(b"c", [b"l"]))
        finally:
            server.stop()


def test_rules_apply_in_a_separate_server_process(aws_env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_mirror_testing.ecr_server", "--part-size", str(5 * MiB)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        with selectors.DefaultSelector() as waiting:  # not select(): it fails past fd 1023
            waiting.register(proc.stdout, selectors.EVENT_READ)
            assert waiting.select(20), "the server printed no endpoint URL within 20 s"
        endpoint_url = proc.stdout.readline().strip()
        assert endpoint_url.startswith("http://127.0.0.1:")
        client = _server_client(endpoint_url)
        client.create_repository(repositoryName="process/app")
        upload = client.initiate_layer_upload(repositoryName="process/app")
        assert upload["partSize"] == 5 * MiB
        client.upload_layer_part(repositoryName="process/app", uploadId=upload["uploadId"],
                                 partFirstByte=0, partLastByte=2, layerPartBlob=b"abc")
        with pytest.raises(client.exceptions.LayerPartTooSmallException):
            client.upload_layer_part(repositoryName="process/app",
                                     uploadId=upload["uploadId"], partFirstByte=3,
                                     partLastByte=5, layerPartBlob=b"def")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
