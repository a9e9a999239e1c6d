"""A blob read part by part from the real registry (behind the counting, dropping
proxy) into the caller's part buffers: boundaries, resumes, digests, memory."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
import requests

from ecr_mirror.errors import DigestMismatch
from ecr_mirror.registry.client import RegistryClient
from ecr_mirror_testing.hostile import answer, client, fake_dns, local_ca, tls  # noqa: F401
from ecr_mirror_testing.images import layer_bytes, push_blob
from ecr_mirror_testing.retry import FAST_RETRY
from tests.integration.conftest import MiB

pytestmark = pytest.mark.integration

PART = 5 * MiB


def client_of(proxy) -> RegistryClient:
    session = requests.Session()
    session.trust_env = False
    return RegistryClient(proxy.host, scheme="http", insecure=True, retry=FAST_RETRY, session=session)


def read_parts(stream, part: int = PART) -> list[bytes]:
    """Every part the way the uploader reads them: one reused buffer, filled again and again."""
    buffer, parts = bytearray(part), []
    while n := stream.readinto(buffer):
        parts.append(bytes(buffer[:n]))
        if n < part:
            break
    return parts


@pytest.fixture
def blob(registry, repo_name):
    """Two full parts and a short third one."""
    data = layer_bytes(f"{repo_name}-stream", 2 * PART + 123_457)
    return repo_name, push_blob(registry.url, repo_name, data), data


@pytest.mark.parametrize("declared", ["size", None])
def test_parts_end_on_their_boundaries_and_the_last_one_is_short(source, blob, declared):
    repo, digest, data = blob
    with client_of(source).open_blob(repo, digest, len(data) if declared else None) as stream:
        parts = read_parts(stream)
        stream.verify()
    assert [len(p) for p in parts] == [PART, PART, 123_457]
    assert b"".join(parts) == data
    assert stream.resumes == 0 and source.counts["GET blob"] == 1


@pytest.mark.parametrize("declared", ["size", None])
@pytest.mark.parametrize("cut", [PART - 1, PART + 7, 2 * PART + 100_000])
def test_a_drop_mid_part_resumes_with_range_and_fills_the_part(source, blob, cut, declared):
    """Without a declared size too: a short body is a drop, never the end of the blob."""
    repo, digest, data = blob
    source.drop_blob_once(digest, after_bytes=cut)
    with client_of(source).open_blob(repo, digest, len(data) if declared else None) as stream:
        parts = read_parts(stream)
        stream.verify()
    assert [len(p) for p in parts] == [PART, PART, 123_457]
    assert b"".join(parts) == data
    assert stream.resumes == 1
    ranges = [h.get("Range") for (_, path, h) in source.requests if path.endswith(digest)]
    assert ranges == [None, f"bytes={cut}-"]


def test_corrupt_bytes_of_the_right_size_are_refused(registry, source, blob):
    repo, digest, data = blob
    registry.corrupt_blob(digest)
    with client_of(source).open_blob(repo, digest, len(data)) as stream:
        assert sum(map(len, read_parts(stream))) == len(data)
        with pytest.raises(DigestMismatch, match="hash to sha256:"):
            stream.verify()


@pytest.mark.parametrize("declared", [-1, +1])
def test_a_blob_other_than_its_declared_size_is_refused(source, blob, declared):
    repo, digest, data = blob
    with pytest.raises(DigestMismatch, match=f"declares {len(data) + declared} bytes"), \
            client_of(source).open_blob(repo, digest, len(data) + declared) as stream:
        read_parts(stream)
        stream.verify()


def test_the_connection_goes_back_to_the_pool_after_a_whole_blob(source, blob):
    repo, digest, data = blob
    registry = client_of(source)
    for _ in range(2):
        with registry.open_blob(repo, digest, len(data)) as stream:
            read_parts(stream)
            stream.verify()
    assert source.connections_opened == 1


def test_a_part_is_read_straight_into_the_callers_buffer(source, blob):
    """No intermediate copy of each chunk read from the socket: a 5 MiB part
    is filled without the reader allocating anything near a chunk's size."""
    repo, digest, data = blob
    buffer = bytearray(PART)
    with client_of(source).open_blob(repo, digest, len(data)) as stream:
        stream.readinto(bytearray(1))  # the request, its headers and the first byte
        tracemalloc.start()
        try:
            assert stream.readinto(buffer) == PART
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert buffer == data[1:PART + 1]
    assert peak < 64 * 1024, f"reading one part allocated {peak} bytes at once"


def close_delimited_then_ranged(data: bytes, cut: int):
    """A registry whose first answer has no Content-Length (its end is the closed
    connection) and stops after `cut` bytes; a Range request gets the rest."""
    def respond(h, m):
        wanted = h.headers.get("Range")
        if wanted is None:
            h.send_response_only(200)
            h.send_header("Connection", "close")
            h.close_connection = True
            h.end_headers()
            h.wfile.write(data[:cut])
            return
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        h.send(206, data[start:], [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")])
    return respond


def test_a_close_delimited_body_cut_short_is_resumed_when_the_size_is_declared(tls, client):
    data = layer_bytes("close-delimited", 3 * MiB + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    tls.route("GET", "/v2/lib/x/blobs/.*", close_delimited_then_ranged(data, MiB + 3))
    tls.route("GET", "/v2/", answer(200, {}))
    with client.open_blob("lib/x", digest, len(data)) as stream:
        parts = read_parts(stream, 2 * MiB)
        stream.verify()
    assert b"".join(parts) == data and stream.resumes == 1
    assert [r.header("Range") for r in tls.seen(path="/blobs/")] == [None, f"bytes={MiB + 3}-"]
