"""The ECR side: what a repository holds, streamed layer uploads, PutImage.

Only this package talks to boto3's ECR client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from .. import aws
from ..errors import TagConflict, TargetError
from ..manifest import SUPPORTED
from ..registry.blob import BlobStream
from ..settings import RepositorySettings
from ..stats import RequestStats
from . import parts
from .lifecycle import untagged_expiry_policy
from .readahead import ReadAhead

log = logging.getLogger(__name__)

BATCH = 100  # BatchCheckLayerAvailability and BatchGetImage take at most 100 ids
#: Codes worth another try once botocore's own retries are spent.
TEMPORARY_CODES = frozenset({
    "ThrottlingException", "ServerException", "ServiceUnavailableException",
    "UploadNotFoundException", "InternalFailure", "RequestTimeout",
})


def _chunks(items: list[str], n: int = BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass(frozen=True)
class TaggedImage:
    digest: str
    manifest: str
    media_type: str | None


class EcrRepository:
    """One ECR repository, seen through the layer-upload API."""

    def __init__(self, client: Any, repository: str, *, registry_id: str | None = None,
                 settings: RepositorySettings | None = None,
                 stats: RequestStats | None = None) -> None:
        self.client = client
        self.repository = repository
        self.registry_id = registry_id
        self.settings = settings or RepositorySettings()
        self.stats = stats or RequestStats()
        self._exists: bool | None = None
        self._lock = threading.Lock()
        parts.install(client)

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call one ECR API; typed errors out, `RepositoryNotFoundException` passed up as is."""
        self.stats.count(f"ecr:{operation}")
        kwargs["repositoryName"] = self.repository
        if self.registry_id:
            kwargs["registryId"] = self.registry_id
        method = getattr(self.client, _snake(operation))
        try:
            answer: dict[str, Any] = method(**kwargs)
            return answer
        except BotoCoreError as exc:
            aws.raise_setup_error(exc)
            raise TargetError(f"ECR {operation} on {self.repository}: {aws.explain(exc, 'ecr')}",
                              temporary=True) from exc

    def _fail(self, operation: str, exc: ClientError) -> TargetError:
        code = aws.error_code(exc)
        message = aws.error_message(exc)
        return TargetError(f"ECR {operation} on {self.repository}: {code}: {message}", code=code,
                           temporary=code in TEMPORARY_CODES)

    # -- reading ------------------------------------------------------------------

    def tagged(self, tag: str) -> TaggedImage | None:
        """The image a tag points to now (no download, no pull), or None."""
        return self.tagged_many([tag]).get(tag)

    def tagged_many(self, tags: Iterable[str]) -> dict[str, TaggedImage]:
        """Tag → image for the tags that exist, in batches of 100."""
        found: dict[str, TaggedImage] = {}
        for batch in _chunks(sorted(set(tags))):
            try:
                answer = self._call("BatchGetImage", imageIds=[{"imageTag": t} for t in batch],
                                    acceptedMediaTypes=list(SUPPORTED))
            except ClientError as exc:
                if aws.error_code(exc) == "RepositoryNotFoundException":
                    self._exists = False
                    return {}
                raise self._fail("BatchGetImage", exc) from exc
            self._exists = True
            for image in answer.get("images", []):
                tag = image["imageId"].get("imageTag")
                if tag:
                    found[tag] = TaggedImage(image["imageId"]["imageDigest"],
                                             image.get("imageManifest", ""),
                                             image.get("imageManifestMediaType"))
        return found

    def existing_images(self, digests: Iterable[str]) -> set[str]:
        """Which of these manifest digests the repository already holds."""
        return set(self.images_by_digest(digests))

    def manifests(self, digests: Iterable[str]) -> dict[str, str]:
        """Digest → manifest text of those the repository holds (BatchGetImage: no pull)."""
        return {d: image.manifest for d, image in self.images_by_digest(digests).items()}

    def images_by_digest(self, digests: Iterable[str]) -> dict[str, TaggedImage]:
        """Digest → image (its manifest read for free) for those the repository holds."""
        digests = sorted(set(digests))
        found: dict[str, TaggedImage] = {}
        if not digests or self._exists is False:
            return found
        for batch in _chunks(digests):
            try:
                answer = self._call("BatchGetImage", imageIds=[{"imageDigest": d} for d in batch],
                                    acceptedMediaTypes=list(SUPPORTED))
            except ClientError as exc:
                if aws.error_code(exc) == "RepositoryNotFoundException":
                    return {}
                raise self._fail("BatchGetImage", exc) from exc
            for image in answer.get("images", []):
                digest = image["imageId"]["imageDigest"]
                found[digest] = TaggedImage(digest, image.get("imageManifest", ""),
                                            image.get("imageManifestMediaType"))
        return found

    def missing_layers(self, digests: Iterable[str]) -> set[str]:
        """Which of these blob digests ECR lacks (`BatchCheckLayerAvailability`)."""
        digests = sorted(set(digests))
        return set(digests) - set(self.available_layers(digests))

    def available_layers(self, digests: Iterable[str]) -> dict[str, int | None]:
        """The blobs among these that ECR holds, with the size ECR gives (`layerSize`)."""
        digests = sorted(set(digests))
        if self._exists is False:
            return {}
        available: dict[str, int | None] = {}
        for batch in _chunks(digests):
            try:
                answer = self._call("BatchCheckLayerAvailability", layerDigests=batch)
            except ClientError as exc:
                if aws.error_code(exc) == "RepositoryNotFoundException":
                    return {}
                raise self._fail("BatchCheckLayerAvailability", exc) from exc
            for layer in answer.get("layers", []):
                if layer.get("layerAvailability") == "AVAILABLE" and layer.get("layerDigest") in batch:
                    size = layer.get("layerSize")
                    available[layer["layerDigest"]] = size if isinstance(size, int) else None
        return available

    # -- writing ------------------------------------------------------------------

    def ensure_exists(self) -> bool:
        """Create the repository with the configured settings; True if it was created."""
        with self._lock:
            if self._exists:
                return False
            try:
                self._call("CreateRepository", **self.settings.create_arguments())
                created = True
            except ClientError as exc:
                if aws.error_code(exc) != "RepositoryAlreadyExistsException":
                    raise self._fail("CreateRepository", exc) from exc
                created = False
            self._exists = True
            if created:
                log.info("created ECR repository", extra={"repository": self.repository})
                self._put_lifecycle_policy()
            return created

    def _put_lifecycle_policy(self) -> None:
        """Expire untagged images in the repository just created (a repository
        that existed before keeps whatever policy its owner gave it)."""
        policy = untagged_expiry_policy(self.settings.untagged_expiry_days)
        if policy is None:
            return
        try:
            try:
                self._call("PutLifecyclePolicy", lifecyclePolicyText=policy)
            except ClientError as exc:
                raise self._fail("PutLifecyclePolicy", exc) from exc
        except TargetError as exc:
            # Housekeeping, not the copy: the image is still mirrored correctly.
            log.warning("could not put the lifecycle policy on a created repository; untagged "
                        "images will stay until one is set",
                        extra={"repository": self.repository, "error": str(exc)})

    def upload_blob(self, stream: BlobStream, on_bytes: Callable[[int], None] | None = None) -> int:
        """Stream one blob from the source into ECR, part by part.

        The next part is read from the source while the current one uploads.
        The digest is verified before `CompleteLayerUpload`, so a corrupt blob
        is never completed. Returns the bytes uploaded.
        """
        try:
            init = self._call("InitiateLayerUpload")
        except ClientError as exc:
            raise self._fail("InitiateLayerUpload", exc) from exc
        upload_id, part_size = init["uploadId"], int(init["partSize"])
        sent = 0
        with ReadAhead(stream, part_size) as parts:
            for part in parts:
                self._upload_part(upload_id, sent, part)
                sent += len(part)
                if on_bytes:
                    on_bytes(len(part))
        stream.verify()
        if sent == 0:
            raise TargetError(f"blob {stream.digest} is empty: ECR refuses empty layers")
        try:
            try:
                self._call("CompleteLayerUpload", uploadId=upload_id, layerDigests=[stream.digest])
            except ClientError as exc:
                if aws.error_code(exc) != "LayerAlreadyExistsException":
                    raise self._fail("CompleteLayerUpload", exc) from exc
        except TargetError as exc:
            # A temporary error or a dropped connection may have lost the answer
            # of a completed upload: ask ECR before the blob is fetched again.
            if not exc.temporary or self.missing_layers([stream.digest]):
                raise
            log.info("CompleteLayerUpload answer lost; ECR has the layer",
                     extra={"digest": stream.digest, "error": str(exc)})
        return sent

    def _upload_part(self, upload_id: str, first: int, part: bytes | bytearray | memoryview) -> None:
        """Upload bytes [first, first+len(part)), resuming from `lastValidByteReceived`."""
        end = first + len(part)
        start, data = first, part
        for _ in range(5):
            try:
                self._call("UploadLayerPart", uploadId=upload_id, partFirstByte=start,
                           partLastByte=end - 1, layerPartBlob=data)
                return
            except ClientError as exc:
                if aws.error_code(exc) != "InvalidLayerPartException":
                    raise self._fail("UploadLayerPart", exc) from exc
                # ECR's own field, which botocore's typed error response does not list
                answer = cast("dict[str, Any]", exc.response)
                next_byte = int(answer.get("lastValidByteReceived", -1)) + 1
                if next_byte == end:
                    return  # ECR already has this part: the earlier answer was lost
                if not first <= next_byte < end:
                    raise TargetError(
                        f"ECR UploadLayerPart on {self.repository}: ECR expects byte {next_byte}, "
                        f"this part holds {first}-{end - 1}; restarting the blob",
                        code="InvalidLayerPartException", temporary=True) from exc
                log.info("resuming a layer part", extra={"from_byte": next_byte})
                start, data = next_byte, part[next_byte - first:]
        raise TargetError(f"ECR UploadLayerPart on {self.repository}: part {first}-{end - 1} "
                          "refused five times", code="InvalidLayerPartException", temporary=True)

    def untag(self, tags: list[str]) -> tuple[list[str], dict[str, str]]:
        """Remove these tags (`BatchDeleteImage` by tag only: an image keeps its
        other tags, and goes only with its last). (tags removed, tag → why not)."""
        removed: list[str] = []
        refused: dict[str, str] = {}
        for batch in _chunks(sorted(set(tags))):
            try:
                answer = self._call("BatchDeleteImage", imageIds=[{"imageTag": t} for t in batch])
            except ClientError as exc:
                raise self._fail("BatchDeleteImage", exc) from exc
            removed += [i["imageTag"] for i in answer.get("imageIds", []) if i.get("imageTag") in batch]
            for failure in answer.get("failures", []):
                tag = failure.get("imageId", {}).get("imageTag", "")
                refused[tag] = f"{failure.get('failureCode')}: {failure.get('failureReason', '')}"
        return sorted(set(removed)), refused

    def put_image(self, manifest: str, media_type: str, digest: str, tag: str | None) -> str:
        """PutImage with the exact manifest string; returns the digest ECR stored."""
        kwargs = {"imageManifest": manifest, "imageManifestMediaType": media_type,
                  "imageDigest": digest}
        if tag:
            kwargs["imageTag"] = tag
        try:
            answer = self._call("PutImage", **kwargs)
        except ClientError as exc:
            code = aws.error_code(exc)
            if code == "ImageAlreadyExistsException":
                return digest
            if code == "ImageTagAlreadyExistsException":
                raise TagConflict(
                    f"ECR repository {self.repository} is tag-immutable and tag {tag} already "
                    f"points to another image; {digest} was not tagged", code=code) from exc
            raise self._fail("PutImage", exc) from exc
        stored: str = answer["image"]["imageId"]["imageDigest"]
        return stored


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
