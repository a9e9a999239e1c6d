"""What a HEAD puts on the wire: the lean path (registry/leanhead.py, its request
written by registry/headwire.py from templates kept per registry) sends, byte for
byte, what requests and http.client send for the same HEAD, HEAD after HEAD, before
and after the registry's challenge."""

from __future__ import annotations

import pytest
import requests

from ecr_mirror.registry import RegistryClient
from ecr_mirror.registry.auth import Credentials
from ecr_mirror.registry.retry import RetryPolicy
from ecr_mirror_testing.loopback import RawListener

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "c" * 64
GOOD = (f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\n"
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 7\r\n\r\n").encode()
CHALLENGE = (b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="test"\r\n'
             b"Content-Length: 0\r\n\r\n")


class Recorder(RawListener):
    """A registry that challenges a request without credentials and answers the others."""

    def __init__(self) -> None:
        super().__init__(respond=lambda request: GOOD if b"\r\nAuthorization: " in request else CHALLENGE)

    def client(self, credentials: Credentials, session: requests.Session | None = None) -> RegistryClient:
        return RegistryClient(f"127.0.0.1:{self.port}", scheme="http", insecure=True,
                              credentials=credentials, retry=RetryPolicy(attempts=1), session=session)


def heads(server: Recorder, session: requests.Session | None) -> list[bytes]:
    server.requests = []
    client = server.client(Credentials("someone", "secret"), session)
    for n in range(3):
        for repository in ("app", "team/app"):
            assert client.head_manifest(repository, f"v{n}").digest == DIGEST
    client.close()
    return server.requests


@pytest.fixture
def server():
    recorder = Recorder()
    yield recorder
    recorder.stop()


def test_a_lean_head_sends_the_bytes_requests_sends(server):
    lean = heads(server, None)  # the transport's own session: HEADs over leanhead's sockets
    through_requests = heads(server, requests.Session())  # a caller's session: requests, http.client
    assert len(lean) == 7  # the challenged HEAD, sent again with credentials, then 5 more
    assert lean == through_requests
    assert b"Authorization: Basic " not in lean[0]
    assert all(b"Authorization: Basic " in request for request in lean[1:])
