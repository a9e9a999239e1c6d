"""A HEAD's answer read by registry/headwire.py (not http.client): a hostile or broken
answer is a clean, typed failure, bounded as http.client bounds it; a well-formed
one, however old-fashioned, is read as before."""

from __future__ import annotations

import pytest

from ecr_mirror.registry import RegistryClient
from ecr_mirror.registry.errors import ConnectionFailed
from ecr_mirror.registry.retry import RetryPolicy
from ecr_mirror_testing.loopback import RawListener

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "b" * 64
GOOD = (f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\n"
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 7\r\n\r\n")


class RawServer(RawListener):
    def client(self) -> RegistryClient:
        return RegistryClient(f"127.0.0.1:{self.port}", scheme="http", insecure=True,
                              retry=RetryPolicy(attempts=1))


@pytest.fixture
def raw():
    servers: list[RawServer] = []

    def start(answer: str | bytes, **kwargs) -> RawServer:
        servers.append(RawServer(answer, **kwargs))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("answer, said", [
    ("HTTP/1.1 200 OK\r\nX-Long: " + "a" * 70_000 + "\r\n\r\n", "longer than 65536 bytes"),
    ("HTTP/1.1 200 OK\r\n" + "X-Many: 1\r\n" * 101 + "\r\n", "more than 100 headers"),
    ("HTTP/1.1 100 Continue\r\n\r\n" * 102, "more than 100 interim answers"),
    ("SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x answer"),
    ("HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x answer"),
    ("HTTP/2 200\r\n\r\n", "not an HTTP/1.x answer"),
    ("HTTP/1.1 200 OK\r\nDocker-Content-Digest " + DIGEST + "\r\n\r\n", "malformed header line"),
    (" folded: first\r\n\r\n", "not an HTTP/1.x answer"),
    ("HTTP/1.1 200 OK\r\n folded: first\r\n\r\n", "folded line"),
    ("", "closed without an answer"),
])
def test_a_broken_or_hostile_answer_is_a_clean_failure(raw, answer, said):
    server = raw(answer, close=True)
    with pytest.raises(ConnectionFailed) as caught:
        server.client().head_manifest("app", "1")
    message = str(caught.value)
    assert said in message and "\n" not in message and len(message) < 600
    assert caught.value.temporary


def test_an_old_fashioned_answer_is_read_and_its_connection_not_kept(raw):
    """HTTP/1.0 (closed after the answer), a folded header, a header given twice, an
    interim 100 first: all read as http.client read them."""
    server = raw("HTTP/1.1 100 Continue\r\n\r\n"
                 "HTTP/1.0 200 OK\r\nDocker-Content-Digest:\r\n  " + DIGEST + "\r\n"
                 "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                 "Content-Length: 7\r\nContent-Length: 7\r\n\r\n")
    client = server.client()
    head = client.head_manifest("app", "1")
    assert (head.digest, head.size) == (DIGEST, None)  # "7, 7" is not a size
    assert client.head_manifest("app", "1").digest == DIGEST
    assert server.connections == 2


@pytest.mark.parametrize("answer, connections", [
    (GOOD, 1),
    (GOOD.replace("200 OK", "200"), 1),  # no reason phrase (HTTP/1.1 allows it)
    (GOOD.replace("\r\n", "\n"), 1),  # bare line feeds, as http.client takes them
    (GOOD.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"), 2),
    (GOOD.replace("HTTP/1.1", "HTTP/1.0").replace("\r\n\r\n", "\r\nConnection: keep-alive\r\n\r\n"), 1),
])
def test_a_connection_is_kept_unless_the_answer_says_it_closes(raw, answer, connections):
    server = raw(answer)
    client = server.client()
    for _ in range(2):
        head = client.head_manifest("app", "1")
        assert (head.digest, head.size) == (DIGEST, 7)
    assert server.connections == connections


def test_the_request_is_written_as_http_client_wrote_it(raw):
    server = raw(GOOD)
    server.client().head_manifest("app", "1")
    [request] = server.requests
    lines = request.decode().split("\r\n")
    assert lines[:2] == ["HEAD /v2/app/manifests/1 HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    # requests' session names its encodings: sent once, http.client's `identity` left out
    assert [line for line in lines if line.lower().startswith("accept-encoding:")] == [
        "Accept-Encoding: gzip, deflate"]
    assert any(line.startswith("Accept: ") for line in lines)
    assert any(line.startswith("User-Agent: ecr-mirror") for line in lines)


def test_a_body_sent_after_a_head_answer_is_not_read_as_the_next_answer(raw):
    """A registry that (wrongly) sends a body with its HEAD answer: the next HEAD on
    that connection reads its own answer, not those bytes."""
    server = raw(GOOD + "garbage")
    client = server.client()
    for _ in range(3):
        assert client.head_manifest("app", "1").digest == DIGEST
    assert client.stats.get("manifest_head") == 3
