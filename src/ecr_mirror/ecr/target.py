"""The ECR side: what a repository holds, streamed layer uploads, PutImage.

Only this package talks to boto3's ECR client.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from ..deadline import propagate
from ..errors import TagConflict, TargetError
from ..manifest import SUPPORTED
from ..registry.blob import BlobStream
from ..settings import RepositorySettings
from ..stats import RequestStats
from . import parts

log = logging.getLogger(__name__)

BATCH = 100  # BatchCheckLayerAvailability and BatchGetImage take at most 100 ids
#: Codes worth another try once botocore's own retries are spent.
TEMPORARY_CODES = frozenset({
    "ThrottlingException", "ServerException", "ServiceUnavailableException",
    "UploadNotFoundException", "InternalFailure", "RequestTimeout",
})


@dataclass(frozen=True)
class TaggedImage:
    digest: str
    manifest: str
    media_type: str | None


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _chunks(items: list[str], n: int = BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class EcrRepository:
    """One ECR repository, seen through the layer-upload API."""

    def __init__(self, client, repository: str, *, registry_id: str | None = None,
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

    def _call(self, operation: str, **kwargs):
        """Call one ECR API; typed errors out, `RepositoryNotFoundException` passed up as is."""
        self.stats.count(f"ecr:{operation}")
        kwargs["repositoryName"] = self.repository
        if self.registry_id:
            kwargs["registryId"] = self.registry_id
        method = getattr(self.client, _snake(operation))
        try:
            return method(**kwargs)
        except BotoCoreError as exc:
            raise TargetError(f"ECR {operation} on {self.repository}: {exc}", temporary=True) from exc

    def _fail(self, operation: str, exc: ClientError) -> TargetError:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
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
                if error_code(exc) == "RepositoryNotFoundException":
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
        digests = sorted(set(digests))
        found: set[str] = set()
        if not digests or self._exists is False:
            return found
        for batch in _chunks(digests):
            try:
                answer = self._call("BatchGetImage", imageIds=[{"imageDigest": d} for d in batch],
                                    acceptedMediaTypes=list(SUPPORTED))
            except ClientError as exc:
                if error_code(exc) == "RepositoryNotFoundException":
                    return set()
                raise self._fail("BatchGetImage", exc) from exc
            found.update(i["imageId"]["imageDigest"] for i in answer.get("images", []))
        return found

    def missing_layers(self, digests: Iterable[str]) -> set[str]:
        """Which of these blob digests ECR lacks (`BatchCheckLayerAvailability`)."""
        digests = sorted(set(digests))
        if self._exists is False:
            return set(digests)
        missing: set[str] = set()
        for batch in _chunks(digests):
            try:
                answer = self._call("BatchCheckLayerAvailability", layerDigests=batch)
            except ClientError as exc:
                if error_code(exc) == "RepositoryNotFoundException":
                    return set(digests)
                raise self._fail("BatchCheckLayerAvailability", exc) from exc
            available = {layer["layerDigest"] for layer in answer.get("layers", [])
                         if layer.get("layerAvailability") == "AVAILABLE"}
            missing.update(d for d in batch if d not in available)
        return missing

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
                if error_code(exc) != "RepositoryAlreadyExistsException":
                    raise self._fail("CreateRepository", exc) from exc
                created = False
            self._exists = True
            if created:
                log.info("created ECR repository", extra={"repository": self.repository})
            return created

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
        with _ReadAhead(stream, part_size) as parts:
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
                if error_code(exc) != "LayerAlreadyExistsException":
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
                if error_code(exc) != "InvalidLayerPartException":
                    raise self._fail("UploadLayerPart", exc) from exc
                next_byte = int(exc.response.get("lastValidByteReceived", -1)) + 1
                if next_byte == end:
                    return  # ECR already has this part: the earlier answer was lost
                if not first <= next_byte < end:
                    raise TargetError(
                        f"ECR UploadLayerPart on {self.repository}: ECR expects byte {next_byte}, "
                        f"this part holds {first}-{end - 1}; restarting the blob",
                        code="InvalidLayerPartException", temporary=True) from exc
                log.info("resuming a layer part", extra={"from_byte": next_byte})
                start, data = next_byte, bytes(part[next_byte - first:])
        raise TargetError(f"ECR UploadLayerPart on {self.repository}: part {first}-{end - 1} "
                          "refused five times", code="InvalidLayerPartException", temporary=True)

    def put_image(self, manifest: str, media_type: str, digest: str, tag: str | None) -> str:
        """PutImage with the exact manifest string; returns the digest ECR stored."""
        kwargs = {"imageManifest": manifest, "imageManifestMediaType": media_type,
                  "imageDigest": digest}
        if tag:
            kwargs["imageTag"] = tag
        try:
            answer = self._call("PutImage", **kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ImageAlreadyExistsException":
                return digest
            if code == "ImageTagAlreadyExistsException":
                raise TagConflict(
                    f"ECR repository {self.repository} is tag-immutable and tag {tag} already "
                    f"points to another image; {digest} was not tagged", code=code) from exc
            raise self._fail("PutImage", exc) from exc
        return answer["image"]["imageId"]["imageDigest"]


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


_END = object()


class _ReadAhead:
    """Reads the next part from the source in a thread while the caller uploads.

    Two part buffers per blob, reused from part to part: one being uploaded,
    one being filled. Memory per blob stays at two parts (none bigger than the
    blob), whatever the blob's size, and nothing is allocated per part.
    """

    BUFFERS = 2

    def __init__(self, stream: BlobStream, part_size: int) -> None:
        self._stream = stream
        self._buffer_size = max(1, min(part_size, stream.size)) if stream.size else part_size
        self._free: queue.Queue = queue.Queue()
        self._allocated = 0
        self._queue: queue.Queue = queue.Queue(maxsize=self.BUFFERS)
        self._stop = threading.Event()
        # The source reads retry: they answer to the copy's deadline too.
        self._thread = threading.Thread(target=propagate(self._run),
                                        name=f"read-{stream.digest[7:19]}", daemon=True)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _buffer(self) -> bytearray | None:
        """A free buffer (the second one is made only when the blob needs it); None on stop."""
        if self._allocated < self.BUFFERS and self._free.empty():
            self._allocated += 1
            return bytearray(self._buffer_size)
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def _run(self) -> None:
        try:
            while (buffer := self._buffer()) is not None:
                n = self._stream.readinto(buffer)
                if n and not self._put((buffer, n)):
                    return
                if n < len(buffer):
                    self._put(_END)
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __iter__(self) -> Iterator[memoryview]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            try:
                yield memoryview(buffer)[:n]
            finally:  # the caller is done with the part: the reader may fill it again
                self._free.put(buffer)

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # The reader may be inside a network read; it notices `_stop` when
        # that returns (the caller closes the stream), and it is a daemon.
        self._thread.join(timeout=5)
