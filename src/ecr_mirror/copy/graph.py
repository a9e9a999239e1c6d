"""The children of an index, copied into ECR as a graph of any depth.

An index may list images, artifacts and other indexes (the OCI image spec
allows it; multi-level build outputs and referrers-by-tag indexes have them).
Each child is finished on its own, children first: an image's blobs then its
manifest by digest; an index's own children then the index by digest. So a
child ECR already holds is complete, and a retry neither fetches it nor
anything under it. Indexes nest at most `MAX_INDEX_DEPTH` levels deep (the top
index is the first): past that the copy stops with a permanent error naming
the chain of digests, before the index too deep is pulled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ecr.target import EcrRepository
from ..errors import UnsupportedMediaType
from ..manifest import INDEX_TYPES, Manifest
from ..reference import Reference
from ..registry.client import RegistryClient
from .blobs import BlobCopier

#: Levels of index, the top one included. Real images have two (a referrers
#: tag index listing an index, a build tool's index of per-OS indexes).
MAX_INDEX_DEPTH = 4

Descriptor = dict[str, Any]


class ManifestGraph:
    """Copies what an index lists. `each` runs work on items in parallel and stops
    at the first error (the engine's); `put` puts one finished child by digest."""

    def __init__(self, source: RegistryClient, ref: Reference, target: EcrRepository, blobs: BlobCopier,
                 each: Callable[[Callable[[Any], None], list[Any]], None],
                 put: Callable[[Manifest], None]) -> None:
        self.source, self.ref, self.target, self.blobs = source, ref, target, blobs
        self.each, self.put = each, put

    def copy_children(self, wanted: list[Descriptor], chain: tuple[str, ...], *, empty: bool = False) -> None:
        """Copy the `wanted` children of the index at the end of `chain` (the
        digests from the top index down) that ECR does not hold yet (none, when
        the repository is `empty`: just created)."""
        have = set() if empty else self.target.existing_images(d["digest"] for d in wanted)
        self.each(lambda d: self._copy_child(d, chain), [d for d in wanted if d["digest"] not in have])

    def _copy_child(self, descriptor: Descriptor, chain: tuple[str, ...]) -> None:
        digest = descriptor["digest"]
        if descriptor.get("mediaType") in INDEX_TYPES:
            self._check_depth((*chain, digest))  # refused before it costs a pull
        child = self.source.get_manifest(self.ref.repository, digest,
                                         image=f"{self.ref} child {' -> '.join((*chain[1:], digest))}")
        if child.is_index:
            self._check_depth((*chain, digest))
            self.copy_children(child.children, (*chain, digest))
        else:
            self.blobs.ensure(self.blobs.sizes(child))
        self.blobs.check_time(f"putting child {child.digest}")
        self.put(child)

    def _check_depth(self, chain: tuple[str, ...]) -> None:
        if len(chain) > MAX_INDEX_DEPTH:
            raise UnsupportedMediaType(
                f"{self.ref}: indexes nested more than {MAX_INDEX_DEPTH} levels deep are not copied: "
                f"{' -> '.join(chain)}")
