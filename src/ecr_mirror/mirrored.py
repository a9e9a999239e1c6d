"""What the ECR tag already holds, and the platform-subset index written for it.

Shared by the planner (is this tag unchanged?) and the engine (the same
question, then the subset it writes); neither imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .ecr.target import TaggedImage
from .errors import UsageError
from .manifest import OCI_INDEX, Manifest, Platform, is_attestation, select_platforms, sha256_digest

SOURCE_DIGEST_ANNOTATION = "io.github.ecr-mirror.source.digest"
PLATFORMS_ANNOTATION = "io.github.ecr-mirror.platforms"


def platforms_key(platforms: Iterable[Platform]) -> str:
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


def subset_note(platforms: tuple[Platform, ...], source_digest: str) -> str:
    return (f"index rewritten to the platforms {platforms_key(platforms)} (with their attestations); "
            f"its digest differs from the upstream index {source_digest}")


def subset_index(index: Manifest, platforms: tuple[Platform, ...], source_digest: str,
                 image: str) -> tuple[Manifest, list[dict[str, Any]]]:
    """The index cut to `platforms` (recording where it came from) and its children;
    `UsageError` when the image has none of them."""
    chosen = select_platforms(index, list(platforms))
    if not any(not is_attestation(d) for d in chosen):
        available = sorted({str(p) for d in index.children if not is_attestation(d)
                            and (p := Platform.from_descriptor(d))})
        raise UsageError(f"{image}: no manifest for platform {platforms_key(platforms)}; "
                         f"the image has {', '.join(available) or 'no platforms'}")
    body = dict(index.body)
    body["manifests"] = chosen
    if index.media_type == OCI_INDEX:
        body["annotations"] = {**(body.get("annotations") or {}),
                               SOURCE_DIGEST_ANNOTATION: source_digest,
                               PLATFORMS_ANNOTATION: platforms_key(platforms)}
    raw = json.dumps(body, indent=2).encode()
    return Manifest(raw=raw, media_type=index.media_type, digest=sha256_digest(raw), body=body), chosen
