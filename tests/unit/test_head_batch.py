"""Planning's HEAD pools (sync/heads.py): a batch's answers are all there when it is
read, an error is the tag's answer, a bug is raised where the answers are read, at
most `size` HEADs of a registry run at once across batches, and close() leaves no
thread behind."""

from __future__ import annotations

import threading

import pytest

from ecr_mirror.reference import parse
from ecr_mirror.registry.client import ManifestHead
from ecr_mirror.registry.errors import NotFound
from ecr_mirror.sync.heads import HeadPools

SOURCE = parse("registry.test/team/app")
OTHER = parse("other.test/app")


class Client:
    """Answers a HEAD once `release` is set; counts HEADs at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def head_manifest(self, repository: str, tag: str) -> ManifestHead:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.release.wait(30)
        with self._lock:
            self.running -= 1
        if tag == "missing":
            raise NotFound(f"{repository}:{tag}")
        if tag == "bug":
            raise KeyError(tag)
        return ManifestHead(digest=f"sha256:{tag}", media_type="m", size=1)


def test_answers_are_all_there_and_errors_stay_with_their_tag():
    client, pools = Client(), HeadPools(4)
    batch = pools.batch()
    for tag in ("1", "missing", "2"):
        batch.ask(client, SOURCE, tag)
    assert "missing" in batch and "3" not in batch
    client.release.set()
    answers = batch.answers()
    pools.close()
    assert answers["1"].digest == "sha256:1" and answers["2"].digest == "sha256:2"
    assert isinstance(answers["missing"], NotFound)


def test_a_bug_in_a_head_is_raised_where_the_answers_are_read():
    client, pools = Client(), HeadPools(2)
    client.release.set()
    batch = pools.batch()
    batch.ask(client, SOURCE, "1")
    batch.ask(client, SOURCE, "bug")
    with pytest.raises(KeyError):
        batch.answers()
    pools.close()


def test_a_registry_sees_at_most_size_heads_across_batches_and_close_ends_every_thread():
    client, other, pools = Client(), Client(), HeadPools(3)
    batches = [pools.batch() for _ in range(4)]
    for n, batch in enumerate(batches):
        for tag in range(5):
            batch.ask(client, SOURCE, f"{n}-{tag}")
        batch.ask(other, OTHER, f"{n}")
    while client.running < 3 or other.running < 3:  # each registry's pool filled
        threading.Event().wait(0.01)
    client.release.set()
    other.release.set()
    assert all(len(batch.answers()) == 6 for batch in batches)
    assert (client.peak, other.peak) == (3, 3)
    pools.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("head-")]


def test_close_drops_heads_not_started():
    client, pools = Client(), HeadPools(1)
    batch = pools.batch()
    for tag in range(5):
        batch.ask(client, SOURCE, str(tag))
    while client.running < 1:  # the first is running (held), the other 4 queued
        threading.Event().wait(0.01)
    queue = pools._queues[SOURCE.registry]
    closing = threading.Thread(target=pools.close)
    closing.start()
    while queue.qsize() != 1:  # the 4 dropped, the thread's end queued
        threading.Event().wait(0.01)
    client.release.set()
    closing.join(30)
    assert not closing.is_alive() and client.peak == 1
    assert list(batch._answers) == ["0"]  # the queued ones were not sent
