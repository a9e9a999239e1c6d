"""Planning's HEADs: one bounded pool per source registry, shared by every entry.

A registry sees at most `size` HEADs at once from a plan, however its tags are
spread over entries (one repository of 5,000 tags, or 1,000 one-tag repositories).
A HEAD's error is its answer: it stays with its tag.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import MirrorError
from ..reference import Reference
from ..registry import RegistryClient
from ..registry.client import ManifestHead


class HeadPools:
    def __init__(self, size: int) -> None:
        self.size = size
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def head(self, client: RegistryClient, source: Reference,
             tag: str) -> Future[ManifestHead | MirrorError]:
        """HEAD `source`'s `tag`, in its registry's pool."""
        with self._lock:
            pool = self._pools.get(source.registry)
            if pool is None:
                pool = self._pools[source.registry] = ThreadPoolExecutor(
                    self.size, thread_name_prefix=f"head-{source.registry}")
        return pool.submit(_head, client, source.repository, tag)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _head(client: RegistryClient, repository: str, tag: str) -> ManifestHead | MirrorError:
    try:
        return client.head_manifest(repository, tag)
    except MirrorError as exc:
        return exc
