"""Referrers: the signatures, SBOMs and attestations that travel with an image.

A referrer of manifest S is a manifest whose `subject` names S. They are found
in two places, and both are looked at:

- the registry's referrers API (`RegistryClient.list_referrers`): one
  *unfiltered* call per subject, filtered here by the policy. One call whatever
  the number of wanted types (a call per type would cost N), and the unwanted
  ones can be reported `skipped`. A 404 (no API) is remembered for the walk;
- the fallback tag schema: the index tagged `sha256-<hex of S>` that lists S's
  referrers, and cosign's `sha256-<hex>.sig`, `.att` and `.sbom` tags. They are
  found with ONE tag listing of the repository per copy (kind `tag_list`, a
  page per 1,000 tags), filtered by name, then a HEAD of each fallback tag that
  exists (free). The alternative, a HEAD of the 4 candidate tags per manifest,
  costs 4 requests per manifest: 4 x 17 = 68 HEADs for an 8-platform index with
  attestations, before its referrers' own referrers. Measured on the bench
  corpus with 6 referrers a tag (bench/referrers_warm.py, warm copy of 51 tags):
  51 listings + 204 HEADs of fallback tags that exist, where the candidates'
  HEADs would be 4 x (121 manifests + 306 referrers) = 1,708. A repository
  with over 1,000 tags pays a page per 1,000, still fewer.

Each referrer is compared with ECR by digest before anything is fetched: a
fallback tag by the digest its ECR tag holds (`tagged_many`), a referrer from
the API or from a fallback index by `existing_images`; an unchanged fallback
index is read from ECR (BatchGetImage, free) instead of the source. Only what is
missing is fetched (a GET: a counted pull). The same walk, with `fetch=False`,
is the planner's question "does this unchanged image miss referrers, and what
would they cost?" without a single pull.

Referrers of referrers (a signature of an SBOM) are walked too, to
`MAX_DEPTH` levels. A referrer that cannot be fetched (pull budget, 429,
deadline) raises the error it got: the image is deferred, never silently left
without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..digest import fallback_tag
from ..ecr.target import EcrRepository, TaggedImage
from ..errors import TagConflict
from ..manifest import Manifest
from ..registry.client import RegistryClient
from ..registry.errors import NotFound
from ..signatures import SIGNATURE_ARTIFACT
from .options import ReferrerPolicy

log = logging.getLogger(__name__)

#: cosign's legacy tags, and the artifact type each one is filtered by: the
#: types cosign gives the same artifacts when it attaches them as OCI 1.1
#: referrers, so one `artifactTypes` entry selects a signature either way.
COSIGN_TAGS = {
    ".sig": SIGNATURE_ARTIFACT,
    ".att": "application/vnd.dev.cosign.artifact.att.v1+json",
    ".sbom": "application/vnd.dev.cosign.artifact.sbom.v1+json",
}
#: Referrers of referrers of ... deeper than this are not looked for.
MAX_DEPTH = 8

#: Puts a fetched manifest (its blobs first) into ECR, under a tag or by digest.
PutManifest = Callable[[Manifest, "str | None"], None]


@dataclass
class Outcome:
    """What a walk found: the report's entries, and (planning) what it would fetch."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    #: Referrers (and changed fallback tags) not in ECR: each a counted pull to copy.
    missing: int = 0
    #: Manifests or fallback tags to write in ECR (a tag to move costs no pull
    #: when ECR holds its manifest by digest already).
    writes: int = 0

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e["status"] == status)


class ReferrerWalk:
    """The referrers of some manifests of one source repository, against one ECR
    repository. `fetch=False`: look only (no counted pull, nothing written);
    `fetch=True`: copy what is missing with `put` (children before parents)."""

    def __init__(self, source: RegistryClient, repository: str, target: EcrRepository,
                 policy: ReferrerPolicy, *, fetch: bool, put: PutManifest | None = None,
                 image: str = "") -> None:
        self.source, self.repo, self.target, self.policy = source, repository, target, policy
        self.fetch, self.put, self.image = fetch, put, image or repository
        self.outcome = Outcome()
        self._api: bool = True  # until the registry answers 404
        self._tags: set[str] | None = None  # the source's fallback tags, listed once
        self._walked: set[str] = set()  # subjects looked at
        self._handled: set[str] = set()  # referrers decided

    def walk(self, subjects: Iterable[str]) -> Outcome:
        for subject in subjects:
            self._subject(subject, 0)
        return self.outcome

    # -- finding -------------------------------------------------------------------

    def _subject(self, subject: str, depth: int) -> None:
        if subject in self._walked or depth > MAX_DEPTH:
            return
        self._walked.add(subject)
        if self._api:
            found = self.source.list_referrers(self.repo, subject)
            if found is None:
                self._api = False
            else:
                self._referrers(found, subject, depth)
        index_tag = fallback_tag(subject)
        present = [t for t in (index_tag, *(index_tag + s for s in COSIGN_TAGS)) if t in self._fallback_tags()]
        # What ECR's tags of the same names hold: only this subject's, so the
        # cost does not grow with the signed images of the repository.
        in_ecr = self.target.tagged_many(present) if present else {}
        if index_tag in present:
            self._fallback_index(index_tag, subject, depth, in_ecr.get(index_tag))
        for suffix, artifact_type in COSIGN_TAGS.items():
            if (tag := index_tag + suffix) in present:
                head = self.source.head_manifest(self.repo, tag)
                descriptor = {"mediaType": head.media_type, "digest": head.digest,
                              "size": head.size, "artifactType": artifact_type}
                held = in_ecr.get(tag)
                self._referrer(descriptor, subject, depth, tag=tag,
                               unchanged=held is not None and held.digest == head.digest)

    def _fallback_tags(self) -> set[str]:
        if self._tags is None:
            try:
                listed = self.source.list_tags(self.repo)
            except NotFound:  # a repository without any tag (distribution: 404 NAME_UNKNOWN)
                listed = []
            self._tags = {t for t in listed if t.startswith("sha256-")}
        return self._tags

    def _referrers(self, descriptors: list[dict[str, Any]], subject: str, depth: int) -> None:
        """Referrers found by digest (the API, a fallback index): one ECR look for all."""
        wanted = [d for d in descriptors if self.policy.wants(d.get("artifactType"))]
        have = self.target.existing_images(d["digest"] for d in wanted)
        for d in descriptors:
            self._referrer(d, subject, depth, tag=None, unchanged=d["digest"] in have)

    def _fallback_index(self, tag: str, subject: str, depth: int, current: TaggedImage | None) -> None:
        """The `sha256-<hex>` index: its children first, then the index under its tag."""
        head = self.source.head_manifest(self.repo, tag)
        entry = {"digest": head.digest, "subject": subject, "artifactType": None, "tag": tag}
        if current is not None and current.digest == head.digest:
            # Unchanged: its list is read from ECR, free; new referrers of the
            # listed ones are still looked for.
            self._referrers(children_of(current.manifest), subject, depth)
            self._record(entry, "unchanged")
            return
        held = self._held(head.digest)  # stored untagged by an earlier copy
        if not self.fetch:
            # Without a pull the new list is unknown: count it and one new
            # referrer (a list moves when a referrer is added); what ECR's older
            # list names is looked at as usual.
            self._plan(entry, 0 if held else 2)
            known = held.children if held else children_of(current.manifest) if current else []
            self._referrers(known, subject, depth)
            return
        index = held or self.source.get_manifest(self.repo, head.digest, image=f"{self.image} {tag}")
        self._referrers(index.children, subject, depth)
        unwanted = [d["digest"] for d in index.children if not self.policy.wants(d.get("artifactType"))]
        if unwanted:
            # ECR refuses an index whose children it lacks, and the index is
            # copied byte-exact or not at all: the wanted referrers went by digest.
            entry["reason"] = (f"the fallback index lists {len(unwanted)} referrer(s) of an artifact "
                               "type not wanted; the wanted ones were copied by digest")
            self._record(entry, "skipped")
            return
        self._put_tagged(index, tag, entry)

    def _referrer(self, descriptor: dict[str, Any], subject: str, depth: int, *,
                  tag: str | None, unchanged: bool) -> None:
        digest, artifact_type = descriptor["digest"], descriptor.get("artifactType")
        entry: dict[str, Any] = {"digest": digest, "subject": subject, "artifactType": artifact_type}
        if tag:
            entry["tag"] = tag
        if not self.policy.wants(artifact_type):
            entry["reason"] = (f"artifact type {artifact_type or '(none)'} is not one of "
                               f"{', '.join(self.policy.artifact_types)}")
            self._record(entry, "skipped")
            return
        key = f"{digest} {tag or ''}"
        if key in self._handled:
            return
        self._handled.add(key)
        if unchanged:
            self._record(entry, "unchanged")
        elif not self.fetch:
            self._plan(entry, 0 if tag and self._held(digest) else 1)
        else:
            self._copy(digest, tag, entry)
        self._subject(digest, depth + 1)

    # -- copying -------------------------------------------------------------------

    def _plan(self, entry: dict[str, Any], pulls: int) -> None:
        self.outcome.missing += pulls
        self.outcome.writes += 1
        self._record(entry, "missing")

    def _held(self, digest: str) -> Manifest | None:
        """The manifest as ECR holds it by digest (BatchGetImage: no pull), if it does."""
        image = self.target.images_by_digest([digest]).get(digest)
        if image is None:
            return None
        held = Manifest.from_bytes(image.manifest.encode(), image.media_type,
                                   image=f"{self.target.repository}@{digest} in ECR")
        return held if held.digest == digest else None

    def _copy(self, digest: str, tag: str | None, entry: dict[str, Any]) -> None:
        manifest = (tag and self._held(digest)) or self.source.get_manifest(
            self.repo, digest, image=f"{self.image} referrer {digest}")
        assert self.put is not None
        if manifest.is_index:  # a referrer may be an index: its children first
            have = self.target.existing_images(d["digest"] for d in manifest.children)
            for child in manifest.children:
                if child["digest"] not in have:
                    self.put(self.source.get_manifest(self.repo, child["digest"],
                                                      image=f"{self.image} referrer {digest}"), None)
        self._put_tagged(manifest, tag, entry)

    def _put_tagged(self, manifest: Manifest, tag: str | None, entry: dict[str, Any]) -> None:
        """Put under the fallback tag (or by digest). When the tag cannot move, the
        manifest is stored by digest, untagged, and the reason reported:

        - upstream's tag moved during the copy (a referrer added; looked at again
          with a HEAD, no pull, just before the tag moves): the tag is left to
          the copy of the newer list, never moved back to an older one;
        - the repository is tag-immutable and the tag holds an older manifest."""
        assert self.put is not None
        why = None
        if tag is not None and self.source.head_manifest(self.repo, tag).digest != manifest.digest:
            why = f"upstream's tag {tag} moved during the copy; the next copy moves it"
        else:
            try:
                self.put(manifest, tag)
            except TagConflict:
                if tag is None:
                    raise
                why = f"the repository is tag-immutable and its tag {tag} holds another manifest"
        if why is None:
            self._record(entry, "copied")
            return
        self.put(manifest, None)
        entry["reason"] = why + ": this one is stored by digest, untagged"
        self._record(entry, "skipped")

    def _record(self, entry: dict[str, Any], status: str) -> None:
        log.info("referrer", extra={"image": self.image, **entry, "status": status})
        self.outcome.entries.append({**entry, "status": status})


def unchanged_subjects(source_digest: str, current: TaggedImage | None) -> list[str]:
    """Whose referrers to look at when the ECR tag already holds the image: the
    index (unless ECR holds a platform subset, whose digest is its own) and the
    children of the index ECR holds (read for free). Engine and planner alike."""
    if current is None:
        return [source_digest]
    own = [source_digest] if current.digest == source_digest else []
    return own + [d["digest"] for d in children_of(current.manifest)]


def children_of(manifest_text: str) -> list[dict[str, Any]]:
    """The descriptors of an index ECR holds (pushed by anyone: read defensively)."""
    try:
        body = json.loads(manifest_text)
    except (ValueError, RecursionError):
        return []
    manifests = body.get("manifests") if isinstance(body, dict) else None
    if not isinstance(manifests, list):
        return []
    return [d for d in manifests if isinstance(d, dict) and isinstance(d.get("digest"), str)]
