"""Planning's HEADs: one bounded pool per source registry, shared by every entry.

A registry sees at most `size` HEADs at once from a plan, however its tags are
spread over entries (one repository of 5,000 tags, or 1,000 one-tag repositories).
A HEAD's error is its answer: it stays with its tag.

An entry asks its HEADs through a `HeadBatch` and waits for them together: the
planning thread wakes once per batch, not once per HEAD, and no `Future` is made per
HEAD (a future and the wake-up of the thread waiting on it cost more CPU than the
rest of the HEAD's own Python).
"""

from __future__ import annotations

import threading
from queue import SimpleQueue

from ..errors import MirrorError
from ..reference import Reference
from ..registry import RegistryClient
from ..registry.client import ManifestHead

Answer = ManifestHead | MirrorError
_Work = tuple[RegistryClient, str, str, "HeadBatch"] | None  # None: the thread ends


class HeadPools:
    def __init__(self, size: int) -> None:
        self.size = size
        self._queues: dict[str, SimpleQueue[_Work]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def batch(self) -> HeadBatch:
        """A batch of HEADs, asked one by one and waited for together."""
        return HeadBatch(self)

    def _queue(self, registry: str) -> SimpleQueue[_Work]:
        with self._lock:
            queue = self._queues.get(registry)
            if queue is None:
                queue = self._queues[registry] = SimpleQueue()
                for n in range(self.size):
                    thread = threading.Thread(target=_work, args=(queue,), name=f"head-{registry}_{n}",
                                              daemon=True)
                    thread.start()
                    self._threads.append(thread)
            return queue

    def close(self) -> None:
        """HEADs not started are dropped; those running are waited for."""
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
            threads, self._threads = self._threads, []
        for queue in queues:
            while not queue.empty():
                queue.get_nowait()
            for _ in range(self.size):
                queue.put(None)
        for thread in threads:
            thread.join()


class HeadBatch:
    """The HEADs of one entry, keyed by tag."""

    def __init__(self, pools: HeadPools) -> None:
        self._pools = pools
        self._answers: dict[str, Answer] = {}
        self._asked: set[str] = set()
        self._left = 0
        self._failed: BaseException | None = None
        self._done = threading.Condition(threading.Lock())

    def __contains__(self, tag: str) -> bool:
        return tag in self._asked

    def ask(self, client: RegistryClient, source: Reference, tag: str) -> None:
        """HEAD `source`'s `tag`, in its registry's pool."""
        self._asked.add(tag)
        with self._done:
            self._left += 1
        self._pools._queue(source.registry).put((client, source.repository, tag, self))

    def answers(self) -> dict[str, Answer]:
        """Every answer asked for, once all are in; an error that is not a `MirrorError`
        (a bug) is raised here, as `Future.result` raised it."""
        with self._done:
            while self._left:
                self._done.wait()
        if self._failed is not None:
            raise self._failed
        return self._answers

    def _put(self, tag: str, answer: Answer | None, failed: BaseException | None = None) -> None:
        with self._done:
            if answer is not None:
                self._answers[tag] = answer
            self._failed = self._failed or failed
            self._left -= 1
            if not self._left:
                self._done.notify_all()


def _work(queue: SimpleQueue[_Work]) -> None:
    while (work := queue.get()) is not None:
        client, repository, tag, batch = work
        try:
            answer: Answer = client.head_manifest(repository, tag)
        except MirrorError as exc:
            answer = exc
        except BaseException as exc:  # raised where the answers are read
            batch._put(tag, None, exc)
            continue
        batch._put(tag, answer)
