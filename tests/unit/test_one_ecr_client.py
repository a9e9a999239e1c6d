"""One ECR client per (process, region): planning threads asking at once share it.

A boto3 client costs ~0.2 CPU s and ~10 MiB to build; threads that each built
one (the race of issue 14, "What binds first" #3) multiplied both.
"""

import threading

import boto3
import pytest

from ecr_mirror import aws
from ecr_mirror.mirror import Mirror, MirrorSettings

THREADS = 16


@pytest.fixture
def built(monkeypatch):
    """A fresh process's client cache, and the list of clients boto3 built."""
    monkeypatch.setattr(aws, "_clients", {})
    monkeypatch.setattr(aws, "_sessions", {})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    made: list = []
    real = boto3.session.Session.client

    def counting(self, *args, **kwargs):
        client = real(self, *args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(boto3.session.Session, "client", counting)
    return made


def together(ask) -> list:
    """`ask()` from THREADS threads released at once; what each got."""
    barrier = threading.Barrier(THREADS)
    got: list = [None] * THREADS

    def run(i: int) -> None:
        barrier.wait()
        got[i] = ask()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_threads_asking_at_once_share_one_client(built):
    mirror = Mirror(MirrorSettings(prefix="mirror", concurrency=16, region="eu-west-1"))
    got = together(lambda: mirror.ecr)
    assert len(built) == 1
    assert all(client is got[0] for client in got)


def test_another_region_gets_its_own_client_once(built):
    mirror = Mirror(MirrorSettings(prefix="mirror", concurrency=16, region="eu-west-1"))
    got = together(lambda: (mirror.ecr, mirror.ecr_client("us-east-2")))
    assert len(built) == 2
    assert {id(c) for pair in got for c in pair} == {id(got[0][0]), id(got[0][1])}
    assert got[0][1].meta.region_name == "us-east-2"


def test_two_mirrors_in_one_process_share_the_client(built):
    settings = MirrorSettings(prefix="mirror", concurrency=16, region="eu-west-1")
    first, second = Mirror(settings), Mirror(settings)
    assert first.ecr is second.ecr
    assert len(built) == 1
