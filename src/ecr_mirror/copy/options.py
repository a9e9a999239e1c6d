"""How one image is copied: platforms, parallelism, deadline, leases, progress hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..deadline import Deadline
from ..leases import Leases, NoLeases
from ..manifest import Platform
from ..settings import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from ..ecr.mount import BlobMounts


class Progress:
    """Hooks for showing blob transfers; the default shows nothing."""

    def blob_started(self, digest: str, size: int) -> None: ...
    def blob_advanced(self, digest: str, n: int) -> None: ...
    def blob_finished(self, digest: str) -> None: ...


@dataclass(frozen=True)
class ReferrerPolicy:
    """Copy the referrers (signatures, SBOMs, attestations with a `subject`) of
    every manifest copied. `artifact_types` empty: all of them; else only those."""

    artifact_types: tuple[str, ...] = ()

    def wants(self, artifact_type: str | None) -> bool:
        return not self.artifact_types or (artifact_type or "") in self.artifact_types


@dataclass(frozen=True)
class VerifyPolicy:
    """The signature gate: an image moves only if a cosign signature over its
    manifest digest verifies with one of `keys` (PEM public keys)."""

    keys: tuple[bytes, ...]
    #: Where the keys came from, for messages (a file name, `ssm:/...`); never the key.
    origin: str = "cosign key"


@dataclass(frozen=True)
class CopyOptions:
    platforms: tuple[Platform, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    #: Whole-blob attempts for temporary failures (after in-stream resumes).
    blob_attempts: int = 3
    progress: Progress = field(default_factory=Progress)
    #: When to stop with `Deferred` (a Lambda's remaining time less a margin);
    #: None means no limit.
    deadline: Deadline | None = None
    #: Who uploads a blob that other workers want too (one at a time per repository).
    leases: Leases = field(default_factory=NoLeases)
    #: None: referrers are not looked up.
    referrers: ReferrerPolicy | None = None
    #: None: no signature gate.
    verify: VerifyPolicy | None = None
    #: None: every missing blob is uploaded (no ECR blob mounts).
    mounts: BlobMounts | None = None
    #: True (a queued image, handed back fewer than MAX_HAND_BACKS times): while another
    #: repository's image uploads a blob this one needs, hand the image back (UploadBusy)
    #: to mount the blob later. False (the CLI, the bound reached): upload it anyway.
    hand_back: bool = False
