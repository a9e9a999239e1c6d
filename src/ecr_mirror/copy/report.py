"""The structured result of copying one image."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import DeferReason, MirrorError
from ..jsonkeys import camel_keys


class Status(StrEnum):
    """How one image's copy ended."""

    COPIED = "copied"
    UNCHANGED = "unchanged"
    #: The copy finished its blobs, but upstream's tag moved to another image in
    #: the meantime, so the ECR tag was left alone (a tag never goes back to an
    #: older image). Nothing went wrong: the newer image gets its own copy.
    SUPERSEDED = "superseded"
    #: Stopped on purpose before the tag moved (pull budget spent, time running
    #: out, the tag busy); `CopyReport.defer_reason` says why, `retry_after` when.
    DEFERRED = "deferred"
    FAILED = "failed"
    #: The signature gate refused the image (`CopyReport.rejected_reason` says
    #: why): nothing of it was tagged. Not retried: it needs a signature upstream.
    REJECTED = "rejected"


COPIED, UNCHANGED, SUPERSEDED = Status.COPIED, Status.UNCHANGED, Status.SUPERSEDED
DEFERRED, FAILED, REJECTED = Status.DEFERRED, Status.FAILED, Status.REJECTED


@dataclass
class CopyReport:
    source: str
    target: str
    status: Status = FAILED
    source_digest: str | None = None
    target_digest: str | None = None
    #: What the ECR tag held before this copy (None: the tag was new, or no tag).
    previous_digest: str | None = None
    media_type: str | None = None
    platforms: list[str] | None = None
    #: Why the ECR digest differs from upstream, when it does (platform subset).
    digest_note: str | None = None
    #: When superseded: the image upstream's tag pointed to just before the tag
    #: would have moved (`target_digest` is then what the ECR tag holds, or None).
    superseded_by: str | None = None
    repository_created: bool = False
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_skipped: int = 0
    bytes_skipped: int = 0
    #: Blobs ECR mounted from another mirrored repository (not fetched, not uploaded).
    blobs_mounted: int = 0
    bytes_mounted: int = 0
    foreign_layers_skipped: int = 0
    manifests_put: int = 0
    #: Manifest GETs at the source: the pulls Docker Hub counts.
    manifests_fetched: int = 0
    #: Referrers (with --referrers): how many were copied, already in ECR, or
    #: left out (their artifact type not wanted); `referrers` lists each one as
    #: {"digest", "subject", "artifactType", "status", "tag"?, "reason"?}.
    referrers_copied: int = 0
    referrers_unchanged: int = 0
    referrers_skipped: int = 0
    referrers: list[dict[str, Any]] = field(default_factory=list)
    #: Why the signature gate refused the image (status REJECTED).
    rejected_reason: str | None = None
    requests: dict[str, int] = field(default_factory=dict)
    rate_limit: dict[str, Any] | None = None
    duration_seconds: float = 0.0
    #: The error as JSON shows it: {"type", "message", "temporary"[, "retryAfter"]}.
    error: dict[str, Any] | None = None
    #: Why the copy was deferred (status DEFERRED), typed; not in the JSON.
    defer_reason: DeferReason | None = None
    #: Seconds after which a deferred or failed copy may be tried again; not in the JSON.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """Nothing went wrong and nothing is left to retry for this image."""
        return self.status in (COPIED, UNCHANGED, SUPERSEDED)

    @property
    def retagged(self) -> bool:
        """Copied, but every blob and image was in ECR already: only the tag moved."""
        return self.status == COPIED and self.blobs_uploaded == 0 and self.manifests_put <= 1

    def stopped_by(self, exc: MirrorError) -> None:
        """The copy ended with `exc`: deferred when the error says so, else failed."""
        self.defer_reason = exc.defer_reason
        self.status = DEFERRED if self.defer_reason else FAILED
        self.retry_after = exc.retry_after
        self.error = {"type": exc.kind, "message": str(exc), "temporary": exc.temporary}
        if exc.retry_after is not None:
            self.error["retryAfter"] = exc.retry_after

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON shows it (camelCase, see docs/schema/output.schema.json):
        strings, numbers, lists and dicts only."""
        data = asdict(self)
        del data["defer_reason"], data["retry_after"]
        data["status"] = self.status.value
        data["requests"] = camel_keys(self.requests)
        return camel_keys(data)

    def error_line(self) -> str:
        err = self.error or {}
        return f"{err.get('type')}: {err.get('message')}"

    def summary(self) -> str:
        """One human line."""
        if self.status in (FAILED, DEFERRED):
            return f"{self.status.value.upper()} {self.source} -> {self.target}: {self.error_line()}"
        if self.status == REJECTED:
            return (f"REJECTED {self.source} -> {self.target}: {self.rejected_reason}; "
                    "nothing of it was copied or tagged")
        if self.status == SUPERSEDED:
            return (f"SUPERSEDED {self.source} -> {self.target}: upstream's tag moved from "
                    f"{self.source_digest} to {self.superseded_by} during the copy; the tag was not "
                    f"moved (it holds {self.target_digest or 'no image'}); copy again for the new image")
        if self.retagged:
            return (f"retagged {self.source} -> {self.target} {self.target_digest} (already in "
                    f"ECR: nothing uploaded, {self.manifests_fetched} manifest pulls, "
                    f"{self.duration_seconds:.1f}s)")
        line = (f"{self.status.value} {self.source} -> {self.target} {self.target_digest} "
                f"(uploaded {self.blobs_uploaded} blobs / {_size(self.bytes_uploaded)}, "
                f"skipped {self.blobs_skipped} / {_size(self.bytes_skipped)}, "
                f"{self.manifests_fetched} manifest pulls, {self.duration_seconds:.1f}s)")
        return line + (f"\n  note: {self.digest_note}" if self.digest_note else "")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover
