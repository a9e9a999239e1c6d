"""What a HEAD puts on the wire: the lean path (registry/leanhead.py, its request
written by registry/headwire.py from templates kept per registry) sends, byte for
byte, what requests and http.client send for the same HEAD, HEAD after HEAD, before
and after the registry's challenge."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from ecr_mirror.registry import RegistryClient
from ecr_mirror.registry.auth import Credentials
from ecr_mirror.registry.retry import RetryPolicy

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "c" * 64
GOOD = (f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\n"
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 7\r\n\r\n").encode()
CHALLENGE = (b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="test"\r\n'
             b"Content-Length: 0\r\n\r\n")


class Recorder:
    """A registry on 127.0.0.1 that challenges a request without credentials and
    answers the others; it records each request's bytes as they arrived."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            buffer = b""
            while data := sock.recv(65536):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    request, _, buffer = buffer.partition(b"\r\n\r\n")
                    self.requests.append(request + b"\r\n\r\n")
                    sock.sendall(GOOD if b"\r\nAuthorization: " in request else CHALLENGE)

    def client(self, credentials: Credentials, session: requests.Session | None = None) -> RegistryClient:
        return RegistryClient(f"127.0.0.1:{self.port}", scheme="http", insecure=True,
                              credentials=credentials, retry=RetryPolicy(attempts=1), session=session)

    def stop(self) -> None:
        self._listener.close()


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
