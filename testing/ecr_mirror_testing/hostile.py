"""A registry on 127.0.0.1 that can be told to misbehave.

Usage (the fixtures ``local_ca``, ``fake_dns``, ``tls`` and ``client`` are
imported into a test module)::

    def test_no_secret_to_the_realm(tls, local_ca):
        tls.route("GET", r"/v2/app/manifests/1", challenge(tls.url("auth.test", "/token")))
        tls.route("GET", "/token", stream(300 << 20, content_length=False), host="auth.test")
        with pytest.raises(LimitExceeded):
            client_for(tls, local_ca.pem, "localhost").get_manifest("app", "1")
        assert not [r for r in tls.seen(host="auth.test") if r.header("Authorization")]

One listener answers every name: with :func:`resolve_test_names` every
``*.test`` host resolves to 127.0.0.1 (or to the address given for it), so
``registry.test:P``, ``cdn.test:P`` and ``auth.test:P`` are different origins
served by one server, told apart by their ``Host`` header. As they are all on
loopback, a client whose registry is ``localhost`` may be sent to them (a
registry on loopback may), one whose registry is ``registry.test`` may not.

A route is ``(method, path regex, host or None)`` → a *responder*, a function of
the request handler and the path match; the helpers below build the usual ones.
Unrouted requests get 404 ``NAME_UNKNOWN``.

Every request is recorded (``requests``: method, host, path with query,
headers) before it is answered. Bodies are streamed in chunks and never held
whole; each streamed body is recorded when it ends (``wait_streams``), and
one the client hung up on is listed in ``cut`` as ``(path, bytes sent)``, so a
test can tell that a client closed the connection instead of reading it all.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from ecr_mirror_testing import proxy
from ecr_mirror_testing.images import _descriptor, _dumps, sha256_digest
from ecr_mirror_testing.proxy import CHUNK

Responder = Callable[["_Handler", re.Match], None]
#: The names the test certificates are valid for (OpenSSL takes no "*.test" wildcard).
TEST_NAMES = ("localhost", "127.0.0.1", *(f"{n}.test" for n in (
    "registry", "auth", "cdn", "evil", "other", "runtime", "metadata", "private")))


@dataclass(frozen=True)
class Request:
    method: str
    host: str  # the Host header without the port
    path: str  # with the query string
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def resolve_test_names(monkeypatch, addresses: dict[str, str | list[str]] | None = None) -> None:
    """Make ``*.test`` names resolve to 127.0.0.1, or to ``addresses[name]``: an
    address, or a list of them answered one per lookup (the last one repeats), as a
    DNS server that rebinds a name between a check and a connection would."""
    real = socket.getaddrinfo
    answers = {name: list(value) if isinstance(value, list) else [value]
               for name, value in (addresses or {}).items()}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # socket's names
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and (name.endswith(".test") or name in answers):
            queue = answers.get(name, ["127.0.0.1"])
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def error_doc(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class _Handler(proxy._Handler):
    """proxy.py's handler (quiet, TCP_NODELAY, open connections tracked through
    ``server.proxy``), answering from the routes instead of forwarding."""

    timeout = 30

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in this request's thread, not in accept()

    def do_GET(self) -> None:  # http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.proxy._dispatch(self)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- what responders use ---------------------------------------------------
    def send(self, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = (),
             content_type: str | None = "application/json") -> None:
        headers = list(headers)
        if content_type and not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", content_type))
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_stream(self, status: int, size: int, headers: Iterable[tuple[str, str]] = (),
                    content_length: bool = True, fill: bytes = b" ") -> None:
        """``size`` bytes of ``fill``, with Content-Length or delimited by closing."""
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_length:
            self.send_header("Content-Length", str(size))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        piece = (fill * (CHUNK // len(fill) + 1))[:CHUNK]
        sent = 0
        try:
            while sent < size:
                n = min(CHUNK, size - sent)
                self.wfile.write(piece[:n])
                sent += n
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            self.server.proxy._record_stream(self.path, sent, sent == size)


class HostileServer:
    """One threaded HTTP/1.1 listener on 127.0.0.1, HTTPS when given a ``trustme.CA``."""

    def __init__(self, *, tls=None) -> None:
        self.requests: list[Request] = []
        self.streams: list[tuple[str, int, bool]] = []  # (path, bytes sent, all of them)
        self._streamed = threading.Condition()
        self._routes: list[tuple[str, re.Pattern, str | None, Responder]] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # counted by proxy.py's handler
        self._server = proxy._Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self  # what proxy.py's handler and server call their owner
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert(*TEST_NAMES).configure_cert(context)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def netloc(self, name: str = "127.0.0.1") -> str:
        return f"{name}:{self.port}"

    def url(self, name: str = "127.0.0.1", path: str = "") -> str:
        return f"{self.scheme}://{self.netloc(name)}{path}"

    # -- lifecycle ----------------------------------------------------------------
    # The same life as proxy.py's server: serve in a daemon thread; stop closes
    # the listening socket and the connections still open.
    start = proxy.SourceProxy.start
    stop = proxy.SourceProxy.stop

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- routes and records ----------------------------------------------------------
    def route(self, method: str, path: str, responder: Responder, *, host: str | None = None) -> None:
        """Answer ``method`` on paths matching the regex ``path`` (for ``host`` only, if given).
        A later route for the same request wins."""
        with self._lock:
            self._routes.insert(0, (method, re.compile(path), host, responder))

    def seen(self, *, host: str | None = None, path: str | None = None) -> list[Request]:
        """Requests received (for ``host``; whose path, query included, contains ``path``)."""
        with self._lock:
            return [r for r in self.requests
                    if (host is None or r.host == host) and (path is None or path in r.path)]

    @property
    def cut(self) -> list[tuple[str, int]]:
        """``(path, bytes sent)`` of the streamed bodies that the client hung up on."""
        with self._streamed:
            return [(path, sent) for path, sent, complete in self.streams if not complete]

    def wait_streams(self, n: int = 1, timeout: float = 60.0) -> None:
        """Wait until ``n`` streamed bodies have ended, sent whole or cut short."""
        with self._streamed:
            if not self._streamed.wait_for(lambda: len(self.streams) >= n, timeout):
                raise AssertionError(f"{len(self.streams)} of {n} streamed answers ended in {timeout} s")

    def _record_stream(self, path: str, sent: int, complete: bool) -> None:
        with self._streamed:
            self.streams.append((path, sent, complete))
            self._streamed.notify_all()

    def _dispatch(self, handler: _Handler) -> None:
        host = (handler.headers.get("Host") or "").rpartition(":")[0] or handler.headers.get("Host", "")
        with self._lock:
            self.requests.append(Request(handler.command, host, handler.path, dict(handler.headers.items())))
            routes = list(self._routes)
        path = urlsplit(handler.path).path
        for method, pattern, only_host, responder in routes:
            match = pattern.fullmatch(path)
            if match and method == handler.command and only_host in (None, host):
                responder(handler, match)
                return
        handler.send(404, error_doc("NAME_UNKNOWN", "no such route on the hostile registry"))


# -- responders ---------------------------------------------------------------------

def answer(status: int, body: bytes | dict | list = b"", headers: Iterable[tuple[str, str]] = (),
           content_type: str | None = "application/json") -> Responder:
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    headers = list(headers)
    return lambda h, m: h.send(status, data, headers, content_type)


def redirect(location: str, status: int = 307) -> Responder:
    return answer(status, b"", [("Location", location)], content_type=None)


def challenge(realm: str, *, scheme: str = "Bearer", service: str = "registry.test",
              scope: str | None = None) -> Responder:
    """401 with ``WWW-Authenticate: <scheme> realm=...,service=...[,scope=...]``."""
    value = f'{scheme} realm="{realm}"' + (f',service="{service}"' if scheme == "Bearer" else "")
    if scope:
        value += f',scope="{scope}"'
    return answer(401, error_doc("UNAUTHORIZED", "authentication required"), [("WWW-Authenticate", value)])


def token_answer(token: str = "hostile-token") -> Responder:
    return answer(200, {"token": token, "expires_in": 300})


def bearer_only(token: str, realm: str, then: Responder, *, service: str = "registry.test") -> Responder:
    """``then`` for requests carrying ``Bearer <token>``, else the challenge to ``realm``."""
    refuse = challenge(realm, service=service)

    def respond(h: _Handler, m: re.Match) -> None:
        (then if h.headers.get("Authorization") == f"Bearer {token}" else refuse)(h, m)
    return respond


def stream(size: int, *, status: int = 200, content_length: bool = True,
           headers: Iterable[tuple[str, str]] = (), fill: bytes = b" ") -> Responder:
    """A body of ``size`` bytes, streamed (``content_length=False``: ended by closing)."""
    headers = list(headers) or [("Content-Type", "application/json")]
    return lambda h, m: h.send_stream(status, size, headers, content_length, fill)


def image_manifest(config: bytes, layers: list[bytes | str]) -> tuple[bytes, str, list[str]]:
    """``(raw OCI manifest, config digest, layer digests)``; a layer given as a str is
    a digest (or anything a hostile registry might put there), taken as is."""
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
           "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer,
                                  None if isinstance(layer, bytes) else 10) for layer in layers]}
    return _dumps(doc), sha256_digest(config), [d["digest"] for d in doc["layers"]]


def manifest(raw: bytes, media_type: str = "application/vnd.oci.image.manifest.v1+json",
             digest: str | None = None) -> Responder:
    """``raw`` as a manifest, with ``Docker-Content-Digest`` (sha256 of ``raw`` unless given)."""
    digest = digest or sha256_digest(raw)
    return answer(200, raw, [("Docker-Content-Digest", digest)], content_type=media_type)


def endless_tags(*, stop_after: int, same_next: bool = False, new_tags: bool = True) -> Responder:
    """Tag pages (route them as ``/v2/(.+)/tags/list``) that have a ``Link: rel="next"``,
    each naming the next page (or always the same next URL), with a new tag each (or
    the same tag every time); only page ``stop_after`` is the last."""
    counter = iter(range(1 << 30))

    def respond(h: _Handler, m: re.Match) -> None:
        page = next(counter)
        tag = f"t{page}" if new_tags else "t"
        headers = []
        if page + 1 < stop_after:
            last = "x" if same_next else tag
            headers.append(("Link", f'</v2/{m.group(1)}/tags/list?n=1&last={last}>; rel="next"'))
        h.send(200, json.dumps({"name": m.group(1), "tags": [tag]}).encode(), headers)
    return respond


# -- fixtures (import them into a test module to use them) ----------------------------

@dataclass(frozen=True)
class LocalCA:
    ca: object  # trustme.CA
    pem: str  # its certificate, for a client's `verify`


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory) -> LocalCA:
    """A throw-away certificate authority whose certificates name localhost and TEST_NAMES."""
    import trustme

    ca = trustme.CA()
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return LocalCA(ca, str(pem))


@pytest.fixture
def fake_dns(monkeypatch):
    """``*.test`` resolves to 127.0.0.1; call the fixture's value to map more names."""
    resolve_test_names(monkeypatch)
    return lambda addresses: resolve_test_names(monkeypatch, addresses)


@pytest.fixture
def tls(local_ca, fake_dns):
    """A HostileServer over HTTPS; its certificate names TEST_NAMES."""
    with HostileServer(tls=local_ca.ca) as server:
        yield server


def client_for(server: HostileServer, ca_pem: str, host: str = "registry.test", **kwargs):
    """The real client for registry ``host`` served by ``server``, retrying fast.

    Every *.test name is on loopback here: a registry named ``localhost`` may send the
    client to them (its realm, its CDN), one named ``registry.test`` may not."""
    from ecr_mirror.registry import RegistryClient
    from ecr_mirror_testing.retry import FAST_RETRY

    kwargs.setdefault("retry", FAST_RETRY)
    return RegistryClient(host, api_host=server.netloc(host), verify=ca_pem, **kwargs)


@pytest.fixture
def client(tls, local_ca):
    """`client_for` registry.test on ``tls``."""
    return client_for(tls, local_ca.pem)
