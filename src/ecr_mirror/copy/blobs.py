"""Blobs of one image into ECR: each once, largest first, in parallel, with leases.

A blob another worker is uploading (it holds the blob's lease) is waited for
until it lands in ECR, then counted as one ECR already had.

With blob mounting, a blob that another repository's image is uploading (its
upload marker, landed.py) is not uploaded a second time: this image copies
every other blob first, then waits in-process for that image to be complete
and mounts the blob from there (or uploads it when that image failed, or its
marker expired: a crashed worker). Only when the deadline leaves no time to
wait is the image handed back (`UploadBusy`), keeping what it uploaded.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

import tenacity

from ..deadline import allow_wait, bounded_wait, current, propagate
from ..deadline import sleep as deadline_sleep
from ..ecr.target import EcrRepository
from ..errors import Deferred, DigestMismatch, UploadBusy
from ..leases import blob_key, lease_seconds
from ..manifest import Manifest
from ..reference import Reference
from ..registry.client import RegistryClient
from ..registry.errors import RateLimited
from .options import CopyOptions
from .report import CopyReport

#: Seconds between looks at ECR while another worker uploads a blob this copy needs.
LEASE_POLL_SECONDS = 2.0
#: Smaller blobs are copied without a lease. A lease is three API calls (take it,
#: look at ECR again, give it back), about as much CPU as copying a megabyte, and
#: workers seldom want the same blob at once (the queue alternates repositories).
LEASE_MIN_BYTES = 1 << 20
#: Seconds an image waits, handed back, while another repository uploads a blob it needs
#: (only when its deadline leaves no time to wait in-process).
UPLOAD_BUSY_RETRY_SECONDS = 15
#: Seconds between looks at where a blob landed while another repository's image uploads
#: it: doubled after each look, up to MARKER_POLL_MAX_SECONDS (each look costs CPU).
MARKER_POLL_SECONDS = 0.5
MARKER_POLL_MAX_SECONDS = 4.0

_DONE: Future = Future()
_DONE.set_result(None)  # a blob ECR already had


def _retry_blob(exc: BaseException) -> bool:
    """A whole blob is tried again after a temporary failure, but not when we
    stopped on purpose or the registry asked us to wait (the transport already
    slept through short waits)."""
    return getattr(exc, "temporary", False) and not isinstance(exc, (Deferred, RateLimited))


class BlobCopier:
    """The blobs of one image copy; `start` before `ensure`, `stop` after."""

    def __init__(self, source: RegistryClient, ref: Reference, target: EcrRepository,
                 options: CopyOptions, report: CopyReport, lock: threading.Lock) -> None:
        self.source, self.ref, self.target = source, ref, target
        self.options, self.report, self._lock = options, report, lock
        self._futures: dict[str, Future] = {}
        self._declared: dict[str, int] = {}  # digest -> the size its first descriptor gave
        self._homes: dict[str, str] = {}  # digest -> a mirrored repository that holds it
        #: Blobs this copy put into the target (uploaded or mounted): where they landed.
        self.placed: list[str] = []
        self._claimed: list[str] = []  # blobs marked as being uploaded by this image (landed.py)
        self._waited = False  # this image said it waits for another's blob (landed.py)
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()  # ends waits for other repositories' uploads

    def start(self) -> None:
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="blob")

    def stop(self, *, wait: bool = True) -> None:
        """Queued blobs are dropped instead of copied (a failure, Ctrl-C)."""
        self._stopping.set()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)

    def check_time(self, doing: str) -> None:
        """Stop cleanly, before the tag moves, when the time left is too short."""
        if self.options.deadline is not None:
            self.options.deadline.check(str(self.ref), doing)

    def sizes(self, manifest: Manifest) -> dict[str, int]:
        """The blobs ECR must hold for `manifest` and their declared sizes (foreign
        layers are counted in the report and left out)."""
        with self._lock:
            self.report.foreign_layers_skipped += len(manifest.foreign_layers())
            sizes: dict[str, int] = {}
            for d in manifest.blobs():
                self._check_declared({d["digest"]: int(d.get("size") or 0)})
                sizes[d["digest"]] = int(d.get("size") or 0)
        return sizes

    def ensure(self, blobs: dict[str, int]) -> None:
        """Make sure ECR holds these blobs; each blob is copied once per image,
        however many children share it, largest first."""
        assert self._pool is not None, "start() first"
        with self._lock:
            self._check_declared(blobs)
            unknown = [d for d in blobs if d not in self._futures]
        held = self.target.available_layers(unknown) if unknown else {}
        self._check_sizes(blobs, held)
        missing = set(unknown) - set(held)
        busy: set[str] = set()
        if missing and self.options.mounts is not None:
            homes = self.options.mounts.homes_for(self.target, missing)
            with self._lock:
                self._homes.update(homes)
            busy = self._claim(sorted(d for d in missing if d not in homes), blobs)
        futures = []
        with self._lock:
            # Largest first; blobs another repository's image is uploading last (they wait).
            for digest in sorted(blobs, key=lambda d: (d in busy, -blobs[d])):
                if digest not in self._futures:
                    if digest in missing:
                        copy = self._copy_when_free if digest in busy else self._copy_blob
                        self._futures[digest] = self._pool.submit(propagate(copy), digest, blobs[digest])
                    else:
                        self._futures[digest] = _DONE
                        self.report.blobs_skipped += 1
                        self.report.bytes_skipped += blobs[digest]
                futures.append(self._futures[digest])
        wait(futures, return_when=FIRST_EXCEPTION)  # a failure is not held up by a wait
        for future in sorted(futures, key=lambda f: not (f.done() and f.exception())):
            future.result()  # the first failure is raised here

    def _claim(self, digests: list[str], sizes: dict[str, int]) -> set[str]:
        """Before uploading anything: mark the blobs no repository holds yet. All or
        none first (of two contenders one gets all its markers); when another
        repository's image marked one of them, each of the others that is free is
        marked one by one. Returns the blobs marked by another repository's image
        (waited for, `_copy_when_free`)."""
        mounts = self.options.mounts
        if not digests or mounts is None or not self.options.hand_back or not self.options.leases.shared:
            return set()
        if mounts.claim(self.target, digests, lease_seconds(sum(sizes[d] for d in digests))):
            with self._lock:
                self._claimed += digests
            return set()
        busy = set[str]()
        for digest in digests:
            if mounts.claim(self.target, [digest], lease_seconds(sizes[digest])):
                with self._lock:
                    self._claimed.append(digest)
            else:
                busy.add(digest)
        return busy

    def _copy_when_free(self, digest: str, size: int) -> None:
        """A blob another repository's image is uploading: once that image is complete,
        mounted from there; once its marker is gone (that image failed) or expired (its
        worker died), marked and uploaded here. `UploadBusy` (hand the image back)
        when the deadline leaves no time for one more look."""
        mounts = self.options.mounts
        assert mounts is not None
        looks = 0
        while not self._stopping.is_set():
            home, marker = mounts.look(self.target, digest)
            if home is not None:
                with self._lock:
                    self._homes[digest] = home
                break
            ours = marker is None or marker.get("repository", {}).get("S") == self.target.repository
            if ours and mounts.claim(self.target, [digest], lease_seconds(size)):
                with self._lock:
                    self._claimed.append(digest)
                break
            pause = min(MARKER_POLL_SECONDS * 2 ** looks, MARKER_POLL_MAX_SECONDS)
            self._before_waiting(digest, size, marker, pause)
            deadline_sleep(pause)
            looks += 1
        else:
            return  # the copy stopped (a failure elsewhere): nothing more to do
        self._copy_blob(digest, size)

    def _before_waiting(self, digest: str, size: int, marker: dict | None, pause: float) -> None:
        """`UploadBusy` when this image is not to wait `pause` seconds for `digest`: too
        little time left, or the image that marked it waits for one of this image's markers."""
        mounts = self.options.mounts
        assert mounts is not None
        deadline = current()
        why = None
        if deadline is not None and deadline.usable() < pause:
            why = "too little time is left to wait for it"
        else:
            with self._lock:
                marked, first, self._waited = list(self._claimed), not self._waited, True
            if first:
                mounts.waiting(self.target, digest, lease_seconds(size))
            if marker is not None and mounts.gives_way(self.target, marker, marked):
                why = "that image waits for a blob this one marked"
        if why:
            raise UploadBusy(f"{self.ref}: another repository's image is uploading blob {digest}, and "
                             f"{why}; handed back for {UPLOAD_BUSY_RETRY_SECONDS}s to mount it",
                             retry_after=UPLOAD_BUSY_RETRY_SECONDS)

    def release_markers(self) -> None:
        """The image is complete (its homes recorded) or failed: others may mount or upload."""
        with self._lock:
            claimed, self._claimed = self._claimed, []
            waited, self._waited = self._waited, False
        if self.options.mounts is not None:
            self.options.mounts.unclaim(self.target, claimed)
            if waited:
                self.options.mounts.done_waiting(self.target)

    def _check_declared(self, blobs: dict[str, int]) -> None:
        """One blob, two sizes in two descriptors of the image: one is wrong, and
        which one is streamed first must not decide the outcome."""
        for digest, size in blobs.items():
            first = self._declared.setdefault(digest, size)
            if first != size:
                raise DigestMismatch(f"blob {self.ref.repository}@{digest}: the manifests declare it with "
                                     f"{first} and with {size} bytes; nothing was tagged")

    def _check_sizes(self, declared: dict[str, int], held: dict[str, int | None]) -> None:
        """A blob ECR already holds is refused like a streamed one when the
        descriptor's size is not the blob's: the same input, the same outcome."""
        for digest, size in held.items():
            if size is not None and size != declared[digest]:
                raise DigestMismatch(f"blob {self.ref.repository}@{digest}: the manifest declares "
                                     f"{declared[digest]} bytes, the blob has {size}; nothing was tagged")

    def _copy_blob(self, digest: str, size: int) -> None:
        self.check_time(f"copying blob {digest}")
        leased = self.options.leases.shared and size >= LEASE_MIN_BYTES
        if leased and not self._take_lease(digest, size):
            return
        try:
            if not self._mount(digest, size):
                self._transfer(digest, size)
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
                return self._landed(size)
        # It may have landed between this image's first look at ECR and now.
        if not self.target.missing_layers([digest]):
            leases.release(key)
            return self._landed(size)
        return True

    def _landed(self, size: int) -> bool:
        """Another worker uploaded the blob: it counts as one ECR already had."""
        with self._lock:
            self.report.blobs_skipped += 1
            self.report.bytes_skipped += size
        return False

    def _mount(self, digest: str, size: int) -> bool:
        """Under the blob's lease, as an upload: True when ECR mounted it from another
        mirrored repository (nothing fetched, nothing uploaded)."""
        home = self._homes.get(digest)
        mounts = self.options.mounts
        if home is None or mounts is None or not mounts.mount(self.target, digest, home):
            return False
        with self._lock:
            self.report.blobs_mounted += 1
            self.report.bytes_mounted += size
            self.placed.append(digest)
        return True

    def _transfer(self, digest: str, size: int) -> None:
        progress = self.options.progress

        def on_bytes(n: int) -> None:
            progress.blob_advanced(digest, n)
            self.check_time(f"finishing blob {digest}")
        for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(_retry_blob),
                stop=tenacity.stop_after_attempt(self.options.blob_attempts),
                wait=bounded_wait(tenacity.wait_exponential_jitter(multiplier=1, max=20)),
                sleep=deadline_sleep, reraise=True):
            with attempt:
                progress.blob_started(digest, size)
                with self.source.open_blob(self.ref.repository, digest, size) as stream:
                    sent = self.target.upload_blob(stream, on_bytes=on_bytes)
                progress.blob_finished(digest)
        with self._lock:  # blob threads add to one report
            self.report.blobs_uploaded += 1
            self.report.bytes_uploaded += sent
            self.placed.append(digest)
