"""The copy engine: given a source image and an ECR repository, move what is missing.

Order is what keeps ECR consistent: blobs first, then child manifests by
digest (untagged), and the tag last, in the single PutImage that moves it. If
anything fails before that, the tag still points where it pointed before.

With referrers on (copy/referrers.py), the referrers of the index and of each
child (and their own referrers, and the fallback tags) are copied after the
children and BEFORE the tag moves: a cluster that admits only signed images
never sees the new tag without its signature. A referrer's `subject` need not
be in ECR yet (the OCI distribution spec 1.1: a registry MUST accept a
manifest whose subject is missing), so nothing waits for the index. A
referrer that cannot be fetched (budget, 429, deadline) stops the copy before
the tag moves: the image is deferred, never tagged without it. An unchanged image still gets its new
referrers (the children are read from the index ECR holds: no pull).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from ..deadline import propagate
from ..ecr.target import EcrRepository, TaggedImage
from ..errors import MirrorError
from ..leases import TAG_LEASE_SECONDS, hold_tag
from ..manifest import Manifest
from ..mirrored import already_mirrored, subset_index, subset_note
from ..reference import Reference
from ..registry.client import RegistryClient
from ..signatures import reject_unsigned
from .blobs import BlobCopier
from .graph import ManifestGraph
from .options import CopyOptions, Progress
from .referrers import ReferrerWalk, unchanged_subjects
from .report import COPIED, FAILED, SUPERSEDED, UNCHANGED, CopyReport

__all__ = ["CopyOptions", "Progress", "copy_image"]

log = logging.getLogger(__name__)


def copy_image(source: RegistryClient, ref: Reference, target: EcrRepository, tag: str | None,
               options: CopyOptions | None = None, *, target_name: str | None = None) -> CopyReport:
    """Copy `ref` into `target` under `tag` and report what happened. Never raises
    for a failed copy: the report says `failed` (or `deferred`) with the error."""
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
        report.stopped_by(exc)
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
                                  "status": report.status.value, "digest": report.target_digest})
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
        self.blobs = BlobCopier(source, ref, target, options, report, self._lock)
        self._head_media_type: str | None = None
        self.graph = ManifestGraph(source, ref, target, self.blobs, self._each, self._put_child)
        #: Manifests listed by child indexes this copy put (their referrers are looked up too).
        self._nested: list[str] = []

    def run(self) -> None:
        head = self.source.head_manifest(self.repo, self.ref.ref)
        self.report.source_digest = head.digest
        self._head_media_type = head.media_type
        current = self.target.tagged(self.tag) if self.tag else None
        self.report.previous_digest = current.digest if current else None
        if self._unchanged_without_pull(head.digest, current):
            if self.options.referrers:  # REFERRERS: an unchanged image's new referrers
                self.blobs.start()
                try:
                    held = current or self.target.images_by_digest([head.digest]).get(head.digest)
                    self._referrers(unchanged_subjects(head.digest, held), [])
                finally:
                    self.blobs.stop()
            return
        # The signature gate (signatures.py): before the tag lease and any blob; a
        # 429 or a spent budget while looking signatures up defers, as anywhere.
        if self.options.verify and reject_unsigned(self.source, self.repo, head.digest,
                                                   self.options.verify, self.report):
            return
        # One copy of a target tag at a time (across workers, with a lease table).
        with self._tag_lease():
            try:
                self._copy(head.digest, current)
            finally:  # complete (homes recorded) or not: its upload markers go
                self.blobs.release_markers()

    def _tag_lease(self) -> contextlib.AbstractContextManager:
        if not self.tag or not self.options.leases.shared:
            return contextlib.nullcontext()
        deadline = self.options.deadline
        seconds = deadline.time_left() if deadline else TAG_LEASE_SECONDS
        return hold_tag(self.options.leases, self.target.repository, self.tag, seconds, str(self.ref))

    def _copy(self, source_digest: str, current: TaggedImage | None) -> None:
        top = self.source.get_manifest(self.repo, source_digest, image=str(self.ref))
        self.report.media_type = top.media_type
        self.blobs.start()
        try:
            if top.is_index:
                top, wanted = self._select(top, source_digest)
                if current and current.digest == top.digest:
                    self._referrers([top.digest] if top.digest == source_digest else [], wanted)
                    return self._unchanged(current.digest)
                self.report.repository_created = self.target.ensure_exists()
                # Each child is finished (blobs, then its manifest by digest, untagged)
                # on its own: what one try completes, the next does not pull again.
                # A child index is a graph of its own, copied the same way (graph.py).
                self.graph.copy_children(wanted, (source_digest,), empty=self.report.repository_created)
            else:
                if self.options.platforms:
                    self.report.digest_note = ("the source is a single-platform image: "
                                               "--platform was not applied")
                self.report.repository_created = self.target.ensure_exists()
                self.blobs.ensure(self.blobs.sizes(top))
            # REFERRERS: of the index (not of a platform subset: it has its own
            # digest), of each child and of each manifest a child index listed,
            # before the tag moves.
            self._referrers([top.digest] if top.digest == source_digest else [],
                            top.children, nested=self._nested)
        finally:
            # On a failure or Ctrl-C, queued blobs are dropped instead of copied.
            self.blobs.stop()
        self.blobs.check_time("moving the tag")
        if self.tag and self._superseded(self.tag):
            return
        self.report.target_digest = self.target.put_image(top.text, top.media_type, top.digest, self.tag)
        self.report.manifests_put += 1
        self.report.status = COPIED
        if self.options.mounts is not None:  # complete: its new blobs can be mounted from here
            self.options.mounts.record(self.target, self.blobs.placed)

    def _superseded(self, tag: str) -> bool:
        """Just before the tag moves: has upstream's tag moved to another image
        meanwhile? Then a copy of the newer image owns the tag, and this one
        leaves it where it is: a tag never goes back to an older image. (A HEAD:
        no pull is counted. A pinned digest has no upstream tag to follow.)"""
        if self.ref.digest:
            return False
        now = self.source.head_manifest(self.repo, self.ref.ref).digest
        if now == self.report.source_digest:
            return False
        current = self.target.tagged(tag)
        self.report.status = SUPERSEDED
        self.report.superseded_by = now
        self.report.target_digest = current.digest if current else None
        log.info("superseded: upstream's tag moved during the copy",
                 extra={"image": str(self.ref), "copied": self.report.source_digest, "upstream": now,
                        "ecr_tag": self.report.target_digest})
        return True

    def _put_child(self, child: Manifest) -> None:
        """Put one finished child (an image, an artifact or an index) by digest, untagged."""
        self.target.put_image(child.text, child.media_type, child.digest, None)
        with self._lock:
            self.report.manifests_put += 1
            if child.is_index:  # what it lists gets its referrers looked up too
                self._nested += [d["digest"] for d in child.children]

    def _put(self, manifest: Manifest, tag: str | None) -> None:
        """A referrer: its blobs, then the manifest (by digest, or under a fallback tag)."""
        self.blobs.ensure(self.blobs.sizes(manifest))
        self.blobs.check_time(f"putting {manifest.digest}")
        self.target.put_image(manifest.text, manifest.media_type, manifest.digest, tag)
        with self._lock:
            self.report.manifests_put += 1

    def _referrers(self, subjects: list[str], children: list[dict[str, Any]],
                   nested: list[str] | None = None) -> None:
        """Copy the referrers of these manifests (copy/referrers.py) into the report."""
        if self.options.referrers is None:
            return
        walk = ReferrerWalk(self.source, self.repo, self.target, self.options.referrers,
                            fetch=True, put=self._put, image=str(self.ref))
        try:
            walk.walk(list(dict.fromkeys(subjects + [d["digest"] for d in children] + (nested or []))))
        finally:  # what was done is reported, also when a referrer stops the copy
            outcome = walk.outcome
            self.report.referrers += outcome.entries
            self.report.referrers_copied += outcome.count("copied")
            self.report.referrers_unchanged += outcome.count("unchanged")
            self.report.referrers_skipped += outcome.count("skipped")

    def _each(self, work: Callable[[Any], None], items: list[Any]) -> None:
        """Run `work` on every item in parallel; the first error stops the rest."""
        if not items:
            return
        pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="child")
        try:
            done, _ = wait([pool.submit(propagate(work), item) for item in items],
                           return_when=FIRST_EXCEPTION)
            for f in done:
                if (error := f.exception()) is not None:
                    raise error
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C: drop the queued blobs too, so the children waiting on them
            # stop at once. (On an error, children already running finish: a
            # retry then does not pull them again.)
            self.blobs.stop(wait=False)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- deciding -----------------------------------------------------------------

    def _unchanged(self, digest: str) -> None:
        self.report.status = UNCHANGED
        self.report.target_digest = digest
        if self.report.media_type is None:  # decided without a GET: the HEAD's type
            self.report.media_type = self._head_media_type

    def _unchanged_without_pull(self, source_digest: str, current: TaggedImage | None) -> bool:
        """True when ECR already has the image: decided without a counted pull."""
        if current is not None and already_mirrored(source_digest, current, self.options.platforms):
            self._unchanged(current.digest)
            if self.options.platforms:
                self.report.digest_note = subset_note(self.options.platforms, source_digest)
            return True
        if not self.tag and not self.options.platforms and self.target.existing_images([source_digest]):
            self._unchanged(source_digest)
            return True
        return False

    def _select(self, index: Manifest, source_digest: str) -> tuple[Manifest, list[dict[str, Any]]]:
        """The index to put and the children to copy (all, or a platform subset)."""
        if not self.options.platforms:
            return index, index.children
        subset = subset_index(index, self.options.platforms, source_digest, str(self.ref))
        self.report.digest_note = subset_note(self.options.platforms, source_digest)
        return subset
