"""The copy engine: given a source image and an ECR repository, move what is missing.

Order is what keeps ECR consistent: blobs first, then child manifests by
digest (untagged), and the tag last, in the single PutImage that moves it. If
anything fails before that, the tag still points where it pointed before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import tenacity

from ..deadline import Deadline, allow_wait, bounded_wait, propagate
from ..deadline import sleep as deadline_sleep
from ..ecr.leases import TAG_LEASE_SECONDS, Leases, NoLeases, blob_key, hold_tag, lease_seconds
from ..ecr.target import EcrRepository, TaggedImage
from ..errors import Deferred, MirrorError, UnsupportedMediaType, UsageError
from ..manifest import OCI_INDEX, Manifest, Platform, is_attestation, select_platforms, sha256_digest
from ..reference import Reference
from ..registry.client import RegistryClient
from ..registry.errors import RateLimited
from .report import COPIED, DEFERRED, FAILED, SUPERSEDED, UNCHANGED, CopyReport

log = logging.getLogger(__name__)

#: Seconds between looks at ECR while another worker uploads a blob this copy needs.
LEASE_POLL_SECONDS = 2.0
#: Smaller blobs are copied without a lease. A lease is three API calls (take it,
#: look at ECR again, give it back), about as much CPU as copying a megabyte, and
#: workers seldom want the same blob at once (the queue alternates repositories).
LEASE_MIN_BYTES = 1 << 20
SOURCE_DIGEST_ANNOTATION = "io.github.ecr-mirror.source.digest"
PLATFORMS_ANNOTATION = "io.github.ecr-mirror.platforms"


_DONE: Future = Future()
_DONE.set_result(None)  # a blob ECR already had


def _retry_blob(exc: BaseException) -> bool:
    """A whole blob is tried again after a temporary failure, but not when we
    stopped on purpose or the registry asked us to wait (the transport already
    slept through short waits)."""
    return getattr(exc, "temporary", False) and not isinstance(exc, (Deferred, RateLimited))


def platforms_key(platforms) -> str:
    return ",".join(sorted(str(p) for p in platforms))


def already_mirrored(source_digest: str, current: TaggedImage | None,
                     platforms: tuple[Platform, ...] = ()) -> bool:
    """Does the ECR tag already hold this upstream image? No source request needed.

    Without a platform subset the digests are equal. A subset index has its own
    digest; the index we wrote records the upstream digest and the platforms it
    was cut for in its annotations.
    """
    if current is None:
        return False
    if not platforms:
        return current.digest == source_digest
    try:
        annotations = json.loads(current.manifest).get("annotations") or {}
    except (ValueError, AttributeError):
        return False
    return (annotations.get(SOURCE_DIGEST_ANNOTATION) == source_digest
            and annotations.get(PLATFORMS_ANNOTATION) == platforms_key(platforms))


class Progress:
    """Hooks for showing blob transfers; the default shows nothing."""

    def blob_started(self, digest: str, size: int) -> None: ...
    def blob_advanced(self, digest: str, n: int) -> None: ...
    def blob_finished(self, digest: str) -> None: ...


@dataclass(frozen=True)
class CopyOptions:
    platforms: tuple[Platform, ...] = ()
    concurrency: int = 4
    #: Whole-blob attempts for temporary failures (after in-stream resumes).
    blob_attempts: int = 3
    progress: Progress = field(default_factory=Progress)
    #: When to stop with `Deferred` (a Lambda's remaining time less a margin);
    #: None means no limit.
    deadline: Deadline | None = None
    #: Who uploads a blob that other workers want too (one at a time per repository).
    leases: Leases = field(default_factory=NoLeases)


def copy_image(source: RegistryClient, ref: Reference, target: EcrRepository, tag: str | None,
               options: CopyOptions | None = None, *, target_name: str | None = None) -> CopyReport:
    """Copy `ref` into `target` under `tag` and report what happened. Never raises
    for a failed copy: the report says `failed` with the error."""
    options = options or CopyOptions()
    report = CopyReport(source=str(ref), target=target_name or _display(target, tag),
                        platforms=[str(p) for p in options.platforms] or None)
    before = {**source.stats.snapshot(), **target.stats.snapshot()}
    started = time.monotonic()
    try:
        # The deadline goes with the copy into every thread it starts (propagate).
        with options.deadline.applied() if options.deadline else contextlib.nullcontext():
            _Copy(source, ref, target, tag, options, report).run()
    except MirrorError as exc:
        deferred = isinstance(exc, Deferred) or getattr(exc, "pull_limit", False)
        report.status = DEFERRED if deferred else FAILED
        report.error = {"type": exc.kind, "message": str(exc), "temporary": exc.temporary}
        if getattr(exc, "retry_after", None) is not None:
            report.error["retry_after"] = exc.retry_after
    except Exception as exc:  # a bug or an unmapped library error: still one report per image
        log.exception("unexpected error while copying", extra={"image": str(ref)})
        report.status = FAILED
        report.error = {"type": type(exc).__name__, "message": str(exc), "temporary": False}
    after = {**source.stats.snapshot(), **target.stats.snapshot()}
    report.requests = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    report.manifests_fetched = report.requests.get("manifest_get", 0)
    if source.stats.rate_limit:
        report.rate_limit = source.stats.rate_limit.as_dict()
    report.duration_seconds = round(time.monotonic() - started, 3)
    log.info("image done", extra={"image": report.source, "target": report.target,
                                  "status": report.status, "digest": report.target_digest})
    return report


def _display(target: EcrRepository, tag: str | None) -> str:
    return target.repository + (f":{tag}" if tag else "")


class _Copy:
    def __init__(self, source: RegistryClient, ref: Reference, target: EcrRepository,
                 tag: str | None, options: CopyOptions, report: CopyReport) -> None:
        self.source, self.ref, self.target, self.tag = source, ref, target, tag
        self.options, self.report = options, report
        self.repo = ref.repository
        self._lock = threading.Lock()
        self._blob_futures: dict[str, Future] = {}
        self._blob_pool: ThreadPoolExecutor | None = None

    def run(self) -> None:
        head = self.source.head_manifest(self.repo, self.ref.ref)
        self.report.source_digest = head.digest
        current = self.target.tagged(self.tag) if self.tag else None
        if self._unchanged_without_pull(head.digest, current):
            return
        # One copy of a target tag at a time (across workers, with a lease table).
        with self._tag_lease():
            self._copy(head.digest, current)

    def _tag_lease(self) -> contextlib.AbstractContextManager:
        if not self.tag or not self.options.leases.shared:
            return contextlib.nullcontext()
        deadline = self.options.deadline
        seconds = deadline.time_left() if deadline else TAG_LEASE_SECONDS
        return hold_tag(self.options.leases, self.target.repository, self.tag, seconds, str(self.ref))

    def _copy(self, source_digest: str, current: TaggedImage | None) -> None:
        top = self.source.get_manifest(self.repo, source_digest, image=str(self.ref))
        self.report.media_type = top.media_type
        self._blob_pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="blob")
        try:
            if top.is_index:
                top, wanted = self._select(top, source_digest)
                if current and current.digest == top.digest:
                    return self._unchanged(current.digest)
                have = self.target.existing_images(d["digest"] for d in wanted)
                self.report.repository_created = self.target.ensure_exists()
                # Each child is finished (blobs, then its manifest by digest, untagged)
                # on its own: what one try completes, the next does not pull again.
                self._each(self._copy_child, [d for d in wanted if d["digest"] not in have])
            else:
                if self.options.platforms:
                    self.report.digest_note = ("the source is a single-platform image: "
                                               "--platform was not applied")
                self.report.repository_created = self.target.ensure_exists()
                self._copy_blobs(self._blobs(top))
        finally:
            # On a failure or Ctrl-C, queued blobs are dropped instead of copied.
            self._blob_pool.shutdown(wait=True, cancel_futures=True)
        self._check_time("moving the tag")
        if self.tag and self._superseded():
            return
        self.report.target_digest = self.target.put_image(top.text, top.media_type, top.digest, self.tag)
        self.report.manifests_put += 1
        self.report.status = COPIED

    def _superseded(self) -> bool:
        """Just before the tag moves: has upstream's tag moved to another image
        meanwhile? Then a copy of the newer image owns the tag, and this one
        leaves it where it is: a tag never goes back to an older image. (A HEAD:
        no pull is counted. A pinned digest has no upstream tag to follow.)"""
        if self.ref.digest:
            return False
        now = self.source.head_manifest(self.repo, self.ref.ref).digest
        if now == self.report.source_digest:
            return False
        current = self.target.tagged(self.tag)
        self.report.status = SUPERSEDED
        self.report.superseded_by = now
        self.report.target_digest = current.digest if current else None
        log.info("superseded: upstream's tag moved during the copy",
                 extra={"image": str(self.ref), "copied": self.report.source_digest, "upstream": now,
                        "ecr_tag": self.report.target_digest})
        return True

    def _copy_child(self, descriptor: dict[str, Any]) -> None:
        child = self.source.get_manifest(self.repo, descriptor["digest"],
                                         image=f"{self.ref} child {descriptor['digest']}")
        if child.is_index:
            raise UnsupportedMediaType(f"{self.ref}: child {descriptor['digest']} is itself an index "
                                       f"({child.media_type}); nested indexes are not supported")
        self._copy_blobs(self._blobs(child))
        self._check_time(f"putting child {child.digest}")
        self.target.put_image(child.text, child.media_type, child.digest, None)
        with self._lock:
            self.report.manifests_put += 1

    def _each(self, work: Callable[[Any], None], items: list[Any]) -> None:
        """Run `work` on every item in parallel; the first error stops the rest."""
        if not items:
            return
        pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="child")
        try:
            done, _ = wait([pool.submit(propagate(work), item) for item in items],
                           return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    raise f.exception()
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C: drop the queued blobs too, so the children waiting on them
            # stop at once. (On an error, children already running finish: a
            # retry then does not pull them again.)
            self._blob_pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- deciding -----------------------------------------------------------------

    def _unchanged(self, digest: str) -> None:
        self.report.status = UNCHANGED
        self.report.target_digest = digest

    def _unchanged_without_pull(self, source_digest: str, current: TaggedImage | None) -> bool:
        """True when ECR already has the image: decided without a counted pull."""
        if already_mirrored(source_digest, current, self.options.platforms):
            self._unchanged(current.digest)
            if self.options.platforms:
                self.report.digest_note = self._subset_note(source_digest)
            return True
        if not self.tag and not self.options.platforms and self.target.existing_images([source_digest]):
            self._unchanged(source_digest)
            return True
        return False

    def _platforms_key(self) -> str:
        return platforms_key(self.options.platforms)

    def _subset_note(self, source_digest: str) -> str:
        return (f"index rewritten to the platforms {self._platforms_key()} (with their attestations); "
                f"its digest differs from the upstream index {source_digest}")

    def _select(self, index: Manifest, source_digest: str) -> tuple[Manifest, list[dict[str, Any]]]:
        """The index to put and the children to copy (all, or a platform subset)."""
        if not self.options.platforms:
            return index, index.children
        chosen = select_platforms(index, list(self.options.platforms))
        if not any(not is_attestation(d) for d in chosen):
            available = sorted({str(p) for d in index.children if not is_attestation(d)
                                and (p := Platform.from_descriptor(d))})
            raise UsageError(f"{self.ref}: no manifest for platform {self._platforms_key()}; "
                             f"the image has {', '.join(available) or 'no platforms'}")
        body = dict(index.body)
        body["manifests"] = chosen
        if index.media_type == OCI_INDEX:
            body["annotations"] = {**(body.get("annotations") or {}),
                                   SOURCE_DIGEST_ANNOTATION: source_digest,
                                   PLATFORMS_ANNOTATION: self._platforms_key()}
        raw = json.dumps(body, indent=2).encode()
        subset = Manifest(raw=raw, media_type=index.media_type, digest=sha256_digest(raw), body=body)
        self.report.digest_note = self._subset_note(source_digest)
        return subset, chosen

    def _blobs(self, manifest: Manifest) -> dict[str, int]:
        with self._lock:
            self.report.foreign_layers_skipped += len(manifest.foreign_layers())
        return {d["digest"]: int(d.get("size") or 0) for d in manifest.blobs()}

    # -- moving -------------------------------------------------------------------

    def _copy_blobs(self, blobs: dict[str, int]) -> None:
        """Make sure ECR holds these blobs; each blob is copied once per image,
        however many children share it, largest first."""
        with self._lock:
            unknown = [d for d in blobs if d not in self._blob_futures]
        missing = self.target.missing_layers(unknown) if unknown else set()
        futures = []
        with self._lock:
            for digest in sorted(blobs, key=lambda d: -blobs[d]):
                if digest not in self._blob_futures:
                    if digest in missing:
                        self._blob_futures[digest] = self._blob_pool.submit(
                            propagate(self._copy_blob), digest, blobs[digest])
                    else:
                        self._blob_futures[digest] = _DONE
                        self.report.blobs_skipped += 1
                        self.report.bytes_skipped += blobs[digest]
                futures.append(self._blob_futures[digest])
        for future in futures:
            future.result()  # the first failure is raised here

    def _check_time(self, doing: str) -> None:
        """Stop cleanly, before the tag moves, when the time left is too short."""
        if self.options.deadline is not None:
            self.options.deadline.check(str(self.ref), doing)

    def _copy_blob(self, digest: str, size: int) -> None:
        self._check_time(f"copying blob {digest}")
        leased = self.options.leases.shared and size >= LEASE_MIN_BYTES
        if leased and not self._take_lease(digest, size):
            return
        try:
            self._transfer_blob(digest, size)
        finally:
            if leased:
                self.options.leases.release(blob_key(self.target.repository, digest))

    def _take_lease(self, digest: str, size: int) -> bool:
        """Hold the blob's lease; False when another worker put the blob into ECR meanwhile."""
        leases, key = self.options.leases, blob_key(self.target.repository, digest)
        while not leases.acquire(key, lease_seconds(size)):
            allow_wait(LEASE_POLL_SECONDS, f"{self.ref}: blob {digest} is being uploaded by another worker")
            deadline_sleep(LEASE_POLL_SECONDS)
            if not self.target.missing_layers([digest]):
                return self._landed(digest, size)
        # It may have landed between this image's first look at ECR and now.
        if not self.target.missing_layers([digest]):
            leases.release(key)
            return self._landed(digest, size)
        return True

    def _landed(self, digest: str, size: int) -> bool:
        """Another worker uploaded the blob: it counts as one ECR already had."""
        with self._lock:
            self.report.blobs_skipped += 1
            self.report.bytes_skipped += size
        return False

    def _transfer_blob(self, digest: str, size: int) -> None:
        progress = self.options.progress

        def on_bytes(n: int) -> None:
            progress.blob_advanced(digest, n)
            self._check_time(f"finishing blob {digest}")
        for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(_retry_blob),
                stop=tenacity.stop_after_attempt(self.options.blob_attempts),
                wait=bounded_wait(tenacity.wait_exponential_jitter(multiplier=1, max=20)),
                sleep=deadline_sleep, reraise=True):
            with attempt:
                progress.blob_started(digest, size)
                with self.source.open_blob(self.repo, digest, size) as stream:
                    sent = self.target.upload_blob(stream, on_bytes=on_bytes)
                progress.blob_finished(digest)
        with self._lock:  # blob threads add to one report
            self.report.blobs_uploaded += 1
            self.report.bytes_uploaded += sent
