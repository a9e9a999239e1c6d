"""The error taxonomy shared by every layer.

Each error says whether it is *temporary* (worth retrying later: a dropped
connection, a 5xx, a rate limit) or not (bad input, a digest mismatch, an
authorization failure). Callers decide on retries from that flag, never from a
message.
"""

from __future__ import annotations

from enum import Enum


class DeferReason(Enum):
    """Why an image was stopped on purpose, to be tried again later (not failed)."""

    #: The invocation's time ran out before the tag could move.
    TIME = "time"
    #: The source's pull budget is spent until its window resets.
    PULL_BUDGET = "pull budget"
    #: Another worker is copying the same target tag.
    TAG_BUSY = "tag busy"
    #: Another repository's image is uploading a blob this one could mount once it lands.
    UPLOAD_BUSY = "upload busy"


class MirrorError(Exception):
    """Base class of every error ecr-mirror raises on purpose."""

    temporary: bool = False
    #: Seconds after which trying again may succeed (a Retry-After, a window reset).
    retry_after: float | None = None
    #: Docker Hub's pull rate limit (a `RateLimited` with the budget spent sets it).
    pull_limit: bool = False

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def defer_reason(self) -> DeferReason | None:
        """Why this error defers the image; None: the image failed."""
        return DeferReason.PULL_BUDGET if self.pull_limit else None


class UsageError(MirrorError):
    """The caller asked for something that cannot work (bad option, bad event)."""


class SetupError(UsageError):
    """The environment is not set up (no AWS credentials): nothing can work until
    it is, so it stops a whole sync rather than failing each image."""


class UnsupportedMediaType(MirrorError):
    """A manifest type ecr-mirror refuses to copy (schema1, unknown types)."""


class InvalidManifest(MirrorError):
    """A manifest the registry sent that is not a well-formed one (not UTF-8 JSON,
    a field of the wrong type). Trying again will not change it."""


class DigestMismatch(MirrorError):
    """Bytes whose sha256 differs from the digest that names them."""


class SecretError(MirrorError):
    """A Secrets Manager secret could not be read (refused, missing, unreachable)
    or does not hold {"username", "password"}; names the secret, never its value."""

    def __init__(self, message: str, *, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary


class CosignKeyError(MirrorError):
    """A cosign public key for the signature gate could not be read (a file, an SSM
    parameter, a secret) or is not a PEM public key; names where, never the content."""

    def __init__(self, message: str, *, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary


class TargetError(MirrorError):
    """ECR refused something; `temporary` tells whether trying again may help."""

    def __init__(self, message: str, *, code: str = "", temporary: bool = False):
        super().__init__(message)
        self.code = code
        self.temporary = temporary


class TagConflict(TargetError):
    """An immutable ECR repository already has the tag on another image."""


class Deferred(MirrorError):
    """Stopped on purpose before finishing (time running out, a budget spent).

    Nothing was tagged; the image is to be tried again later.
    """

    temporary = True
    reason = DeferReason.TIME

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def defer_reason(self) -> DeferReason:
        return self.reason


class TagBusy(Deferred):
    """Another worker is copying the same target tag; try again shortly."""

    reason = DeferReason.TAG_BUSY


class UploadBusy(Deferred):
    """Another repository's image is uploading a blob this image needs: handed back,
    holding nothing, to mount the blob once that image is complete (copy/blobs.py)."""

    reason = DeferReason.UPLOAD_BUSY
