"""Real Amazon ECR's rules, enforced on top of moto's lax ECR emulator.

moto (5.2) accepts things real ECR refuses: a wrong digest at
``CompleteLayerUpload``, parts of any size, a manifest whose blobs were never
uploaded, an index whose children were never pushed; it computes image digests
its own way and drops a moved tag's old image. Tests that pass on plain moto can
fail on AWS. This module patches moto's ``ECRBackend`` (the model layer, so
every front end sees it: in-process ``mock_aws``, ``ThreadedMotoServer`` and a
separate server process) with the documented rules::

    with mock_aws(), strict_ecr():            # or enable() ... disable()
        client.initiate_layer_upload(...)     # strict from here on

Usage notes:

* ``enable()`` / ``disable()`` are idempotent; ``strict_ecr()`` restores the
  previous state on exit (nesting is fine) and yields :data:`calls`.
* ``PART_SIZE`` (module attribute) or the env var ``STRICT_ECR_PART_SIZE`` set
  the ``partSize`` that ``InitiateLayerUpload`` advertises (default 10 MiB, as
  moto). The 5 MiB minimum for a non-final part is a constant of ECR and applies
  whatever is advertised.
* :data:`calls` counts the ECR API requests this process served, by name
  (``calls["UploadLayerPart"]``); ``reset_calls()`` clears it. A separate server
  process has its own counter.
* Uploaded bytes are never kept: each part is hashed as it arrives (sha256) and
  only sizes and digests are stored (``Repository.layers``: digest -> size, what
  ``BatchCheckLayerAvailability`` reads), so multi-GiB layers cost no memory.
* :data:`uploaded_bytes` counts the bytes UploadLayerPart accepted, per repository.
* ECR's account settings (moto has none): ``GetAccountSetting`` /
  ``PutAccountSetting`` of ``BLOB_MOUNTING`` (default DISABLED, as ECR), read by
  ecr_mount.py; ``GetAuthorizationToken`` tokens expire in 12 hours as ECR's do
  (moto's expired in 2015). ``reset_calls()`` clears the settings too.
* Two patches sit on ``ECRResponse`` instead: ``call_action`` (the counter) and
  ``upload_layer_part``, which decodes the JSON body once instead of moto's six
  times a part (a speed fix for server-mode benchmarks; same behaviour).

Choices where ECR's documentation is silent: ``lastValidByteReceived`` is -1
when nothing was received yet (moto's convention; resuming at +1 is correct);
an unsupported manifest media type (e.g. schema1) is ``InvalidParameterException``
(the only one of the two candidates that PutImage declares); pushing an
existing manifest again without a tag is ``ImageAlreadyExistsException``.

OCI 1.1 (ECR supports it since 2024-06): artifacts (``artifactType``, the empty
config ``application/vnd.oci.empty.v1+json`` uploaded as its 2-byte ``{}`` blob
like any config), nested indexes (every child, index or image, must already be
in the repository), manifests without ``mediaType`` (then ``imageManifestMediaType``
is required, as the PutImage reference says). A ``subject`` must be a
well-formed descriptor but need not be in the repository: an assumption, from
the OCI distribution spec (a referrer may be pushed before its subject) and no
ECR document saying otherwise. Zero-byte blobs cannot be uploaded
(``EmptyUploadException``), so no manifest naming one can be put.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    ImageAlreadyExistsException,
    InvalidLayerPartException,
    InvalidParameterException,
    UploadNotFoundException,
)
from moto.ecr.models import ECRBackend, Image, Repository, RepoTagMutability
from moto.ecr.responses import ECRResponse
from moto.moto_api._internal import mock_random

__all__ = [
    "PART_SIZE",
    "account_setting",
    "calls",
    "current_part_size",
    "disable",
    "enable",
    "is_enabled",
    "lose_complete_answers",
    "reset_calls",
    "strict_ecr",
    "uploaded_bytes",
]

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 10 * MiB  # what moto (and ECR) advertise
PART_SIZE_ENV = "STRICT_ECR_PART_SIZE"
PART_SIZE: int | None = None  # overrides the env var when set
MIN_PART_SIZE = 5 * MiB  # 5,242,880: every part but the last (constant)
MAX_PART_SIZE = 20_971_520  # API reference limit for layerPartBlob
MAX_MANIFEST_SIZE = 4 * MiB  # imageManifest, in UTF-8 bytes
MAX_LAYER_DIGESTS = 100  # BatchCheckLayerAvailability

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
NONDISTRIBUTABLE_PREFIX = "application/vnd.oci.image.layer.nondistributable."


# --------------------------------------------------------------------------
# Exceptions: ``code`` is the ECR shape name, so moto's serializer writes it as
# ``__type`` and boto3 raises ``client.exceptions.<code>``.


class ServerException(ServiceException):
    code = "ServerException"


class LayerPartTooSmallException(ServiceException):
    code = "LayerPartTooSmallException"


class InvalidLayerException(ServiceException):
    code = "InvalidLayerException"


class EmptyUploadException(ServiceException):
    code = "EmptyUploadException"


class LayerAlreadyExistsException(ServiceException):
    code = "LayerAlreadyExistsException"


class ImageDigestDoesNotMatchException(ServiceException):
    code = "ImageDigestDoesNotMatchException"


class ImageTagAlreadyExistsException(ServiceException):
    code = "ImageTagAlreadyExistsException"


class LayersNotFoundException(ServiceException):
    code = "LayersNotFoundException"


class ReferencedImagesNotFoundException(ServiceException):
    code = "ReferencedImagesNotFoundException"


class _InvalidLayerPart(InvalidLayerPartException):
    """moto's InvalidLayerPartException (its attributes registry_id,
    repository_name, upload_id and last_valid_byte_received are serialized into
    the error body as the ECR model's members) with the reason in the message."""

    def __init__(self, upload: _Upload, reason: str):
        super().__init__(
            upload.registry_id,
            upload.repository_name,
            upload.upload_id,
            upload.size - 1,
        )
        self.message = f"{self.message}: {reason}"


# --------------------------------------------------------------------------
# State


class CallCounter(Counter):
    """A Counter of ECR API names that threads can bump safely."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def record(self, name: str) -> None:
        with self._lock:
            self[name] += 1

    def reset(self) -> None:
        with self._lock:
            self.clear()


calls = CallCounter()
#: Repository -> bytes UploadLayerPart accepted (what an upload cost; a mount adds none).
uploaded_bytes: Counter = Counter()

# Guards repository.images / uploads / layers across server threads. Hashing a
# part happens outside it (under the upload's own lock) so uploads run in parallel.
_STATE_LOCK = threading.RLock()
_PATCH_LOCK = threading.Lock()
_STATE_ATTR = "_strict_ecr_patches"  # on ECRBackend: [(owner, name, saved)]
_MISSING = object()
_faults: Counter = Counter()  # operation -> answers still to lose


class _Upload:
    """An upload in progress: a running sha256 and counts, never the bytes."""

    def __init__(self, repository_name: str, registry_id: str, upload_id: str = ""):
        self.upload_id = upload_id or str(mock_random.uuid4())
        self.repository_name = repository_name
        self.registry_id = registry_id
        self.size = 0
        self.parts = 0
        self.last_part_size: int | None = None
        self.lock = threading.Lock()
        self._sha256 = hashlib.sha256()

    @property
    def last_byte_received(self) -> int:
        return self.size - 1

    def add(self, blob: bytes) -> None:
        self._sha256.update(blob)
        self.size += len(blob)
        self.parts += 1
        self.last_part_size = len(blob)

    def digest(self) -> str:
        return "sha256:" + self._sha256.hexdigest()


class StrictImage(Image):
    """moto's Image with ECR's digest (set by the caller) and size."""

    def __init__(self, *args: Any, size: int | None, artifact_media_type: str | None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._size = size
        self.artifact_media_type = artifact_media_type

    def get_image_size_in_bytes(self) -> int | None:
        return self._size


def current_part_size() -> int:
    """The partSize InitiateLayerUpload advertises now."""
    if PART_SIZE is not None:
        return int(PART_SIZE)
    value = os.environ.get(PART_SIZE_ENV)
    return int(value) if value else DEFAULT_PART_SIZE


def reset_calls() -> None:
    """Clear the call counter, any fault still pending and the account settings."""
    calls.reset()
    with _STATE_LOCK:
        _faults.clear()
        _errors.clear()
        account_settings.clear()
        uploaded_bytes.clear()


def lose_complete_answers(times: int = 1) -> None:
    """The next ``times`` CompleteLayerUpload calls store the layer, then answer
    ``ServerException``: the work is done but the client never hears so."""
    with _STATE_LOCK:
        _faults["CompleteLayerUpload"] += times


#: operation -> [error code, ...] its next calls answer (``fail_next``).
_errors: dict[str, list[str]] = {}


def fail_next(operation: str, code: str, times: int = 1) -> None:
    """The next ``times`` calls of ``operation`` (GetAccountSetting only, for now)
    answer the error ``code`` (ThrottlingException, ServerException, AccessDeniedException...)."""
    with _STATE_LOCK:
        _errors.setdefault(operation, []).extend([code] * times)


def _injected_error(operation: str) -> None:
    with _STATE_LOCK:
        codes = _errors.get(operation)
        code = codes.pop(0) if codes else None
    if code:
        raise type(code, (ServerException,), {"code": code})(f"injected by strict_ecr: {code}")


def _lose_answer(operation: str) -> bool:
    with _STATE_LOCK:
        if _faults[operation] > 0:
            _faults[operation] -= 1
            return True
        return False


# --------------------------------------------------------------------------
# Layer uploads


def _get_upload(repo: Repository, upload_id: str | None) -> _Upload:
    upload = repo.uploads.get(upload_id) if upload_id else None
    if upload is None:
        raise UploadNotFoundException(str(upload_id), repo.name, repo.registry_id)
    if not isinstance(upload, _Upload):  # started by plain moto before enable()
        with _STATE_LOCK:
            adopted = _Upload(repo.name, repo.registry_id, upload.upload_id)
            data = bytes(getattr(upload, "layer_parts", b""))
            if data:
                adopted.add(data)
            repo.uploads[upload.upload_id] = upload = adopted
    return upload


def _initiate_layer_upload(
    self: ECRBackend, repository_name: str, registry_id: str | None = None
) -> dict[str, Any]:
    repo = self._get_repository(repository_name, registry_id)
    upload = _Upload(repo.name, repo.registry_id)
    with _STATE_LOCK:
        repo.uploads[upload.upload_id] = upload
    return {"uploadId": upload.upload_id, "partSize": current_part_size()}


def _upload_layer_part(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    part_first_byte: int,
    part_last_byte: int,
    layer_part_blob: bytes,
    registry_id: str | None = None,
) -> dict[str, Any]:
    repo = self._get_repository(repository_name, registry_id)
    upload = _get_upload(repo, upload_id)
    blob = layer_part_blob or b""
    if part_first_byte is None or part_last_byte is None:
        raise InvalidParameterException(
            "Invalid parameter: partFirstByte and partLastByte are required"
        )
    with upload.lock:
        if repo.uploads.get(upload.upload_id) is not upload:  # completed meanwhile
            raise UploadNotFoundException(upload.upload_id, repo.name, repo.registry_id)
        if part_first_byte != upload.size:
            raise _InvalidLayerPart(
                upload,
                f"partFirstByte {part_first_byte} is not the next expected byte "
                f"{upload.size}",
            )
        if not blob:
            raise _InvalidLayerPart(upload, "the layer part is empty")
        if part_last_byte - part_first_byte + 1 != len(blob):
            raise _InvalidLayerPart(
                upload,
                f"range {part_first_byte}-{part_last_byte} does not match the "
                f"{len(blob)} bytes sent",
            )
        if len(blob) > MAX_PART_SIZE:
            raise _InvalidLayerPart(
                upload, f"part of {len(blob)} bytes exceeds {MAX_PART_SIZE} bytes"
            )
        if upload.last_part_size is not None and upload.last_part_size < MIN_PART_SIZE:
            raise LayerPartTooSmallException(
                f"Layer part {upload.parts} of upload '{upload.upload_id}' has "
                f"{upload.last_part_size} bytes, less than the minimum of "
                f"{MIN_PART_SIZE} bytes for a part that is not the last"
            )
        upload.add(blob)
        last = upload.last_byte_received
    with _STATE_LOCK:
        uploaded_bytes[repo.name] += len(blob)
    return {
        "registryId": repo.registry_id,
        "repositoryName": repo.name,
        "uploadId": upload.upload_id,
        "lastByteReceived": last,
    }


def _complete_layer_upload(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    repo = self._get_repository(repository_name, registry_id)
    upload = _get_upload(repo, upload_id)
    if not layer_digests:
        raise InvalidParameterException(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'"
        )
    with upload.lock:
        if repo.uploads.get(upload.upload_id) is not upload:
            raise UploadNotFoundException(upload.upload_id, repo.name, repo.registry_id)
        if upload.size == 0:
            raise EmptyUploadException(
                f"The upload with id '{upload.upload_id}' does not contain any layer parts"
            )
        actual = upload.digest()
        if layer_digests[0] != actual:
            raise InvalidLayerException(
                f"Layer digest '{layer_digests[0]}' does not match the digest "
                f"'{actual}' of the uploaded data"
            )
        with _STATE_LOCK:
            del repo.uploads[upload.upload_id]
            if actual in repo.layers:
                raise LayerAlreadyExistsException(
                    f"The layer '{actual}' already exists in the repository with "
                    f"name '{repo.name}' in the registry with id '{repo.registry_id}'"
                )
            repo.layers[actual] = upload.size
    if _lose_answer("CompleteLayerUpload"):
        raise ServerException("injected by strict_ecr: the layer was stored but the answer is lost")
    return {
        "registryId": repo.registry_id,
        "repositoryName": repo.name,
        "uploadId": upload.upload_id,
        "layerDigest": actual,
    }


def _batch_check_layer_availability(
    self: ECRBackend,
    repository_name: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    count = len(layer_digests or [])
    if not 1 <= count <= MAX_LAYER_DIGESTS:
        raise InvalidParameterException(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: "
            f"'Member must have length between 1 and {MAX_LAYER_DIGESTS}' ({count} given)"
        )
    original = _original(ECRBackend, "batch_check_layer_availability")
    return original(self, repository_name, layer_digests, registry_id=registry_id)


# --------------------------------------------------------------------------
# Images


def _parse_manifest(image_manifest: str) -> dict[str, Any]:
    try:
        manifest = json.loads(image_manifest)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        raise InvalidParameterException(
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
            "'Invalid JSON syntax'"
        )
    return manifest


def _media_type(manifest: dict[str, Any], given: str | None) -> str:
    declared = manifest.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidParameterException("Invalid parameter: manifest mediaType")
    if given and declared and given != declared:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageManifestMediaType': '{given}' does not match "
            f"the manifest's mediaType '{declared}'"
        )
    media_type = given or declared
    if not media_type:
        raise InvalidParameterException(
            "image manifest mediatype not provided in manifest or parameter"
        )
    if manifest.get("schemaVersion") != 2 or media_type not in (
        IMAGE_MANIFEST_TYPES | INDEX_TYPES
    ):
        raise InvalidParameterException(
            f"Invalid parameter at 'ImageManifest': unsupported manifest "
            f"(mediaType '{media_type}', schemaVersion {manifest.get('schemaVersion')!r})"
        )
    return media_type


def _is_foreign(layer: dict[str, Any]) -> bool:
    media_type = str(layer.get("mediaType") or "")
    return media_type == FOREIGN_LAYER or media_type.startswith(NONDISTRIBUTABLE_PREFIX)


def _descriptors(manifest: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = manifest.get(key)
    if not isinstance(value, list) or not all(
        isinstance(d, dict) and isinstance(d.get("digest"), str) for d in value
    ):
        raise InvalidParameterException(
            f"Invalid parameter at 'ImageManifest': '{key}' must be a list of descriptors"
        )
    return value


def _check_subject(manifest: dict[str, Any]) -> None:
    """OCI 1.1: an optional ``subject`` descriptor (mediaType, digest, size).
    The subject need not be in the repository (see the module notes)."""
    if "subject" not in manifest:
        return
    subject = manifest["subject"]
    if not (isinstance(subject, dict) and isinstance(subject.get("mediaType"), str)
            and isinstance(subject.get("digest"), str)
            and isinstance(subject.get("size"), int) and not isinstance(subject.get("size"), bool)):
        raise InvalidParameterException(
            "Invalid parameter at 'ImageManifest': 'subject' must be a descriptor with "
            "mediaType, digest and size"
        )


def _check_image_manifest(repo: Repository, manifest: dict[str, Any]) -> int:
    """LayersNotFoundException unless config and distributable layers are here;
    returns the image size (sum of its layers)."""
    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise InvalidParameterException(
            "Invalid parameter at 'ImageManifest': 'config' must be a descriptor"
        )
    layers = _descriptors(manifest, "layers")
    required = [config["digest"]] + [d["digest"] for d in layers if not _is_foreign(d)]
    missing = [d for d in dict.fromkeys(required) if d not in repo.layers]
    if missing:
        raise LayersNotFoundException(
            f"Layers with digests {missing} required for pushing image into repository "
            f"with name '{repo.name}' in the registry with id '{repo.registry_id}' "
            "do not exist"
        )
    sizes = (repo.layers.get(d["digest"], d.get("size")) for d in layers)
    return sum(s for s in sizes if isinstance(s, int))


def _check_index(repo: Repository, manifest: dict[str, Any]) -> int:
    """ReferencedImagesNotFoundException unless every child is an image here;
    returns the largest child's size, as ECR reports for a manifest list."""
    children = [d["digest"] for d in _descriptors(manifest, "manifests")]
    images = {image.image_digest: image for image in repo.images}
    missing = [d for d in dict.fromkeys(children) if d not in images]
    if missing:
        raise ReferencedImagesNotFoundException(
            f"Manifest list references unknown image(s) {missing} in the repository "
            f"with name '{repo.name}' in the registry with id '{repo.registry_id}'"
        )
    return max((images[d].image_size_in_bytes or 0 for d in children), default=0)


def _tag_is_immutable(repo: Repository, tag: str) -> bool:
    filters = repo.image_tag_mutability_exclusion_filters or []
    excluded = any(fnmatch.fnmatchcase(tag, f.get("filter", "")) for f in filters)
    mutability = repo.image_tag_mutability
    if mutability == RepoTagMutability.IMMUTABLE:
        return True
    if mutability == RepoTagMutability.IMMUTABLE_WITH_EXCLUSION:
        return not excluded
    if mutability == RepoTagMutability.MUTABLE_WITH_EXCLUSION:
        return excluded
    return False


def _remove_tag(image: Image, tag: str) -> None:
    image.image_tags.remove(tag)
    image.image_tag = image.image_tags[-1] if image.image_tags else None


def _image_id(digest: str, tag: str | None) -> dict[str, str]:
    return {"imageDigest": digest, **({"imageTag": tag} if tag else {})}


def _put_image(
    self: ECRBackend,
    repository_name: str,
    image_manifest: str,
    image_tag: str | None,
    image_manifest_mediatype: str | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    repo = self._get_repository(repository_name)
    if not isinstance(image_manifest, str) or not image_manifest:
        raise InvalidParameterException("Invalid parameter: imageManifest is required")
    raw = image_manifest.encode("utf-8")
    if len(raw) > MAX_MANIFEST_SIZE:
        raise InvalidParameterException(
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
            f"'Member must have length less than or equal to {MAX_MANIFEST_SIZE}'"
        )
    image_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if digest is not None and digest != image_digest:
        raise ImageDigestDoesNotMatchException(
            f"The digest '{digest}' does not match the digest '{image_digest}' of "
            "the image manifest"
        )
    if image_tag == "":
        raise InvalidParameterException("Invalid parameter: imageTag must not be empty")
    manifest = _parse_manifest(image_manifest)
    media_type = _media_type(manifest, image_manifest_mediatype)
    _check_subject(manifest)

    with _STATE_LOCK:
        if media_type in IMAGE_MANIFEST_TYPES:
            size = _check_image_manifest(repo, manifest)
            artifact_media_type = manifest["config"].get("mediaType")
        else:
            size = _check_index(repo, manifest)
            artifact_media_type = None
        existing = next((i for i in repo.images if i.image_digest == image_digest), None)
        if existing is not None and (image_tag is None or image_tag in existing.image_tags):
            raise ImageAlreadyExistsException(
                repository_name=repo.name,
                registry_id=repo.registry_id,
                digest=image_digest,
                image_tag=image_tag or "null",
            )
        if image_tag is not None:
            owner = next((i for i in repo.images if image_tag in i.image_tags), None)
            if owner is not None:
                if _tag_is_immutable(repo, image_tag):
                    raise ImageTagAlreadyExistsException(
                        f"The image tag '{image_tag}' already exists in the "
                        f"'{repo.name}' repository and cannot be overwritten because "
                        "the tag is immutable."
                    )
                _remove_tag(owner, image_tag)  # the old image stays, maybe untagged
        if existing is not None:
            existing.update_tag(image_tag)
        else:
            repo.images.append(
                StrictImage(
                    self.account_id,
                    image_tag,
                    image_manifest,
                    repo.name,
                    media_type,
                    image_digest,
                    repo.registry_id,
                    size=size,
                    artifact_media_type=artifact_media_type,
                )
            )
    return {
        "registryId": repo.registry_id,
        "repositoryName": repo.name,
        "imageId": _image_id(image_digest, image_tag),
        "imageManifest": image_manifest,
        "imageManifestMediaType": media_type,
    }


def _batch_get_image(
    self: ECRBackend,
    repository_name: str,
    registry_id: str | None = None,
    image_ids: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    repo = self._get_repository(repository_name, registry_id)
    if not image_ids:
        raise InvalidParameterException("Invalid parameter: imageIds is required")
    images: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []

    def fail(image_id: dict[str, Any], code: str, reason: str) -> None:
        failures.append({"imageId": dict(image_id), "failureCode": code,
                         "failureReason": reason})

    with _STATE_LOCK:
        for image_id in image_ids:
            tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
            if not tag and not digest:
                fail(image_id, "MissingDigestAndTag",
                     "Invalid request parameters: both tag and digest cannot be null")
                continue
            if digest:
                image = next((i for i in repo.images if i.image_digest == digest), None)
            else:
                image = next((i for i in repo.images if tag in i.image_tags), None)
            if image is None:
                fail(image_id, "ImageNotFound", "Requested image not found")
                continue
            if tag and digest and tag not in image.image_tags:
                fail(image_id, "ImageTagDoesNotMatchDigest", "Invalid request "
                     "parameters: given tag does not map to the given digest")
                continue
            images.append({
                "registryId": repo.registry_id,
                "repositoryName": repo.name,
                "imageId": _image_id(image.image_digest, tag),
                "imageManifest": image.image_manifest,
                "imageManifestMediaType": image.image_manifest_media_type,
            })
    return {"images": images, "failures": failures}


# --------------------------------------------------------------------------
# Response layer: request counting (ECRResponse dispatches every front end's
# requests) and one performance fix.


def _upload_layer_part_response(self: ECRResponse) -> Any:
    """moto's handler calls ``_get_param`` six times and each call json-decodes
    the whole body again (13 MiB of base64 for a 10 MiB part); decode it once.
    Same parameters, same backend call: only CPU and memory churn change."""
    if self.automated_parameter_parsing or not self.body:
        return _original(ECRResponse, "upload_layer_part")(self)
    try:
        params = json.loads(self.body)
    except ValueError:
        params = None
    if not isinstance(params, dict):
        return _original(ECRResponse, "upload_layer_part")(self)
    blob = params.get("layerPartBlob")
    if isinstance(blob, str):  # the JSON protocol sends blobs base64-encoded
        try:
            blob = base64.b64decode(blob)
        except (binascii.Error, ValueError):
            raise InvalidParameterException(
                "Invalid parameter at 'layerPartBlob': not valid base64"
            ) from None
    params.pop("layerPartBlob", None)  # drop the encoded copy early
    result = self.ecr_backend.upload_layer_part(
        params.get("repositoryName"),
        params.get("uploadId"),
        params.get("partFirstByte"),
        params.get("partLastByte"),
        blob,
        registry_id=params.get("registryId"),
    )
    return ActionResult(result)



# --------------------------------------------------------------------------
# Account settings (moto has no Get/PutAccountSetting) and registry tokens.

#: (account, region) -> setting name -> value; ECR's default for BLOB_MOUNTING is DISABLED.
account_settings: dict[tuple[str, str], dict[str, str]] = {}
SETTING_DEFAULTS = {"BLOB_MOUNTING": "DISABLED"}
TOKEN_HOURS = 12  # how long ECR's registry tokens last


def account_setting(account: str, region: str, name: str) -> str:
    with _STATE_LOCK:
        return account_settings.get((account, region), {}).get(name, SETTING_DEFAULTS.get(name, ""))


def _get_account_setting(self: ECRResponse) -> Any:
    _injected_error("GetAccountSetting")
    name = self._get_param("name")
    if name not in SETTING_DEFAULTS:
        raise InvalidParameterException(f"Invalid parameter: unknown account setting {name!r}")
    return ActionResult({"name": name, "value": account_setting(self.current_account, self.region, name)})


def _put_account_setting(self: ECRResponse) -> Any:
    name, value = self._get_param("name"), self._get_param("value")
    if name != "BLOB_MOUNTING" or value not in ("ENABLED", "DISABLED"):
        raise InvalidParameterException(f"Invalid parameter: {name}={value!r}")
    with _STATE_LOCK:
        account_settings.setdefault((self.current_account, self.region), {})[name] = value
    return ActionResult({"name": name, "value": value})


def registry_password(account: str) -> str:
    """The password in moto's GetAuthorizationToken token (user AWS)."""
    return f"{account}-auth-token"


def _get_authorization_token(self: ECRResponse) -> Any:
    """moto's answer, but expiring in 12 hours as ECR's does (moto's expired in 2015)."""
    import datetime

    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=TOKEN_HOURS)
    data = []
    for registry_id in self._get_param("registryIds") or [self.current_account]:
        token = base64.b64encode(f"AWS:{registry_password(registry_id)}".encode()).decode()
        data.append({"authorizationToken": token, "expiresAt": expires,
                     "proxyEndpoint": f"https://{registry_id}.dkr.ecr.{self.region}.amazonaws.com"})
    return ActionResult({"authorizationData": data})


def _call_action(self: ECRResponse) -> Any:
    try:
        name = self._get_action() or "Unknown"
    except Exception:  # counting must never break a request
        name = "Unknown"
    calls.record(name)
    return _original(ECRResponse, "call_action")(self)


# --------------------------------------------------------------------------
# Installing and removing the patches

_PATCHES: tuple[tuple[type, str, Any], ...] = (
    (ECRBackend, "initiate_layer_upload", _initiate_layer_upload),
    (ECRBackend, "upload_layer_part", _upload_layer_part),
    (ECRBackend, "complete_layer_upload", _complete_layer_upload),
    (ECRBackend, "batch_check_layer_availability", _batch_check_layer_availability),
    (ECRBackend, "put_image", _put_image),
    (ECRBackend, "batch_get_image", _batch_get_image),
    (ECRResponse, "call_action", _call_action),
    (ECRResponse, "upload_layer_part", _upload_layer_part_response),
    (ECRResponse, "get_account_setting", _get_account_setting),
    (ECRResponse, "put_account_setting", _put_account_setting),
    (ECRResponse, "get_authorization_token", _get_authorization_token),
)
_originals: dict[tuple[type, str], Any] = {}


def _original(owner: type, name: str) -> Any:
    return _originals[(owner, name)]


def is_enabled() -> bool:
    # Kept on the moto class, so a second import of this module under another
    # name sees the patches too and never stacks a second layer.
    return _STATE_ATTR in ECRBackend.__dict__


def enable() -> None:
    """Install ECR's rules into moto, in this process (idempotent)."""
    with _PATCH_LOCK:
        if is_enabled():
            return
        saved = []
        for owner, name, replacement in _PATCHES:
            _originals[(owner, name)] = getattr(owner, name, None)
            saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
            setattr(owner, name, replacement)
        setattr(ECRBackend, _STATE_ATTR, saved)


def disable() -> None:
    """Give moto back its own behaviour (idempotent)."""
    with _PATCH_LOCK:
        if not is_enabled():
            return
        for owner, name, previous in ECRBackend.__dict__[_STATE_ATTR]:
            if previous is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)
        delattr(ECRBackend, _STATE_ATTR)


@contextlib.contextmanager
def strict_ecr(part_size: int | None = None) -> Iterator[CallCounter]:
    """Strict ECR inside the block (optionally advertising ``part_size``);
    leaves things as they were on exit. Yields :data:`calls`."""
    global PART_SIZE
    was_enabled, previous_part_size = is_enabled(), PART_SIZE
    if part_size is not None:
        PART_SIZE = part_size
    enable()
    try:
        yield calls
    finally:
        PART_SIZE = previous_part_size
        if not was_enabled:
            disable()
