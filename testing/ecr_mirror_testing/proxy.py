"""A counting, fault-injecting HTTP proxy in front of a registry, on 127.0.0.1.

Usage::

    with LocalRegistry() as reg, SourceProxy(reg.url) as proxy:
        copy_from(proxy.url)                      # the code under test
        assert proxy.counts["GET manifest"] == 1
        proxy.drop_blob_once(digest, after_bytes=1000)

It is a reverse proxy (clients talk to it as if it were the registry): every
request is forwarded to the upstream with its headers and body (hop-by-hop
headers stripped), the answer comes back with status, headers and a body that
is streamed in chunks (blobs of several GiB are never held in memory). Range
requests and 206 answers pass through unchanged; a ``Location`` (or ``Link``)
header pointing at the upstream is rewritten to point at the proxy.

Requests are counted by ``"<METHOD> <kind>"`` where kind is ``manifest``,
``blob``, ``upload`` (``/blobs/uploads/...``), ``tags``, ``referrers`` or
``other`` (including ``/v2/``). Body bytes are counted per kind too:
``bytes_out`` (answers relayed to clients) and ``bytes_in`` (request bodies
forwarded to the upstream).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import logging
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read/write when streaming a body

# RFC 9110 hop-by-hop headers, plus those the proxy sets itself.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection", "expect", "host",
}  # fmt: skip

_ROUTES = [  # order matters: uploads before blobs
    ("manifest", re.compile(r"^/v2/.+/manifests/[^/]+$")),
    ("upload", re.compile(r"^/v2/.+/blobs/uploads(/.*)?$")),
    ("blob", re.compile(r"^/v2/.+/blobs/(?P<digest>[a-z0-9+._-]+:[a-zA-Z0-9=_-]+)$")),
    ("tags", re.compile(r"^/v2/.+/tags/list$")),
    ("referrers", re.compile(r"^/v2/.+/referrers/[^/]+$")),
]


def shutdown_connections(lock: threading.Lock, connections: set[socket.socket]) -> None:
    """Shut down the client connections a server still has open (keep-alive ones
    would otherwise outlive it)."""
    with lock:
        open_connections = list(connections)
    for sock in open_connections:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def classify(path: str) -> tuple[str, str | None]:
    """``(kind, blob digest or None)`` of a request path (query string ignored)."""
    path = urlsplit(path).path
    for kind, pattern in _ROUTES:
        m = pattern.match(path)
        if m:
            return kind, m.groupdict().get("digest")
    return "other", None


def _hop_by_hop(headers) -> set[str]:
    """Hop-by-hop header names, including those listed in ``Connection``."""
    names = set(_HOP_BY_HOP)
    for value in headers.get_all("Connection") or []:
        names.update(token.strip().lower() for token in value.split(","))
    return names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: SourceProxy

    def handle_error(self, request, client_address) -> None:
        """Client disconnects are normal (dropped downloads, 2 GiB aborts): be quiet."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, http.client.HTTPException)):
            return
        log.exception("SourceProxy: error while handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end after this (socket timeout)
    server: _Server
    #: The upstream connection this client connection's next request may reuse
    #: (`SourceProxy.keep_upstream`).
    _kept: http.client.HTTPConnection | None = None

    def log_message(self, format, *args) -> None:  # stdlib signature
        pass  # quiet: no access log on stderr

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle
        # and delayed ACKs stall every answer by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.proxy._lock:
            self.server.proxy._connections.add(self.connection)
            self.server.proxy.connections_opened += 1

    def finish(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        with self.server.proxy._lock:
            self.server.proxy._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:  # http.server naming
        proxy = self.server.proxy
        key = f"{self.command} {classify(self.path)[0]}"
        proxy._enter(key)
        try:
            if proxy.delay:
                time.sleep(proxy.delay)  # injected latency, not a timing assertion
            self._forward()
        finally:
            proxy._leave(key)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- request side ------------------------------------------------------
    def _request_body(self):
        """``(iterator over the de-chunked request body, framing)``; framing is
        ``"chunked"``, ``"length"`` (the client's Content-Length is forwarded) or None."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(), "chunked"
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self._read_exact(length), "length"
        return None, None

    def _read_exact(self, length: int):
        while length > 0:
            data = self.rfile.read(min(CHUNK, length))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            length -= len(data)
            yield data

    def _read_chunked(self):
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return
            yield from self._read_exact(size)
            self.rfile.readline(1024)  # CRLF after the chunk

    def _forward(self) -> None:
        proxy = self.server.proxy
        kind, digest = classify(self.path)
        key = f"{self.command} {kind}"
        proxy._record(key, self.command, self.path, dict(self.headers.items()))
        body, framing = self._request_body()

        injected = proxy._take_failure(key)
        if injected is not None:
            for _ in body or ():
                pass  # consume the request body to keep the connection usable
            self._send_injected(*injected)
            return

        conn, reused = (self._kept, True) if self._kept is not None else (proxy._upstream_connection(), False)
        self._kept = None
        try:
            try:
                resp = self._send_upstream(conn, body, framing, key)
            except (OSError, http.client.HTTPException) as exc:
                if not (reused and body is None):
                    self.close_connection = True
                    self._send_injected(502, {}, f"upstream error: {exc}".encode())
                    return
                # A kept connection the upstream had closed meanwhile: once more, on a new one
                # (only a request without a body, which nothing has consumed).
                conn.close()
                conn = proxy._upstream_connection()
                try:
                    resp = self._send_upstream(conn, body, framing, key)
                except (OSError, http.client.HTTPException) as again:
                    self.close_connection = True
                    self._send_injected(502, {}, f"upstream error: {again}".encode())
                    return
            drop_after = None
            if self.command == "GET" and kind == "blob" and resp.status in (200, 206):
                drop_after = proxy._take_drop(digest)
            self._relay(resp, drop_after, key)
            if proxy.keep_upstream and drop_after is None and not resp.will_close:
                if resp.length == 0:
                    resp.read()  # a bodiless answer (HEAD, 204, 304): done with it
                if resp.isclosed():
                    self._kept, conn = conn, None  # answer read to its end: the connection is reusable
        finally:
            if conn is not None:
                conn.close()

    def _send_upstream(self, conn: http.client.HTTPConnection, body, framing: str | None,
                       key: str) -> http.client.HTTPResponse:
        """Forward the request on `conn` (headers, then the body as it comes); its answer."""
        proxy = self.server.proxy
        skip = _hop_by_hop(self.headers)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", proxy._upstream_netloc)
        for name, value in self.headers.items():
            if name.lower() not in skip:
                conn.putheader(name, value)
        if framing == "chunked":
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        sent = 0
        for data in body or ():
            sent += len(data)
            if framing == "chunked":
                conn.send(b"%X\r\n" % len(data) + data + b"\r\n")
            else:
                conn.send(data)
        if framing == "chunked":
            conn.send(b"0\r\n\r\n")
        proxy._count_bytes(proxy.bytes_in, key, sent)
        return conn.getresponse()

    # -- response side -----------------------------------------------------
    def _relay(self, resp: http.client.HTTPResponse, drop_after: int | None, key: str) -> None:
        proxy = self.server.proxy
        self.send_response_only(resp.status, resp.reason)
        skip = _hop_by_hop(resp.msg) | {"content-length"}
        for name, value in resp.msg.items():
            if name.lower() not in skip:
                if name.lower() in ("location", "link"):
                    value = value.replace(proxy.upstream, proxy.url)
                self.send_header(name, value)

        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        length = resp.getheader("Content-Length")
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
        elif length is not None:
            self.send_header("Content-Length", length)
        elif resp.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # body delimited by the upstream closing the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if no_body:
            return

        self._relay_body(resp, length is None and resp.chunked, drop_after, key)

    def _relay_body(self, resp: http.client.HTTPResponse, chunked: bool, budget: int | None,
                    key: str) -> None:
        """Stream the body to the client (cut after ``budget`` bytes if given).

        Each piece is counted in ``bytes_out`` before it is written (and taken back
        if the write fails), so the count is complete once the client has the body.
        """
        proxy = self.server.proxy
        view = memoryview(bytearray(CHUNK))
        while True:
            n = resp.readinto(view)
            if not n:
                break
            piece = view[:n]
            if budget is not None:
                piece = piece[:budget]
                budget -= len(piece)
            proxy._count_bytes(proxy.bytes_out, key, len(piece))
            try:
                if chunked:
                    self.wfile.write(b"%X\r\n" % len(piece) + bytes(piece) + b"\r\n")
                else:
                    self.wfile.write(piece)
            except OSError:
                proxy._count_bytes(proxy.bytes_out, key, -len(piece))
                raise
            if budget == 0:
                self._abort()
                return
        if budget is not None:  # body shorter than after_bytes: still drop the connection
            self._abort()
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _abort(self) -> None:
        """Close the client connection in the middle of a body (a dropped download)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_injected(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if not any(k.lower() == "content-type" for k in headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


_ERROR_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN", 429: "TOOMANYREQUESTS"}


class SourceProxy:
    """A threaded HTTP/1.1 reverse proxy to ``upstream`` on 127.0.0.1:<free port>.

    ``counts``: ``collections.Counter`` of ``"<METHOD> <kind>"`` (thread-safe
    updates). ``requests``: list of ``(method, path with query, headers dict)``.
    """

    #: The request handler (a subclass may answer some requests itself).
    handler_class: type[BaseHTTPRequestHandler] = _Handler

    def __init__(self, upstream: str, *, upstream_timeout: float = 60.0, keep_upstream: bool = False) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL: {upstream!r}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self._upstream_netloc = parts.netloc
        self._upstream_timeout = upstream_timeout
        #: Reuse an upstream connection for the next request of the same client
        #: connection once an answer was read to its end (default: one per request).
        #: Cheaper for the upstream and the proxy (`make bench-scale`); what clients
        #: see, and what is counted, is the same.
        self.keep_upstream = keep_upstream
        self.counts: collections.Counter[str] = collections.Counter()
        self.bytes_out: collections.Counter[str] = collections.Counter()
        self.bytes_in: collections.Counter[str] = collections.Counter()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._drops: dict[str, int] = {}
        self._failures: dict[str, list[tuple[int, dict, bytes]]] = {}
        self._connections: set[socket.socket] = set()
        #: Client connections accepted so far (a kept-alive connection counts once).
        self.connections_opened = 0
        #: Seconds each request waits before it is forwarded (a registry's latency).
        self.delay = 0.0
        #: ``"<METHOD> <kind>"`` -> requests in the proxy now, and the most at once.
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self._gates: dict[str, tuple[int, threading.Event]] = {}
        self._server = _Server(("127.0.0.1", 0), self.handler_class)
        self._server.proxy = self
        self.port: int = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self) -> SourceProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                name=f"SourceProxy-{self.port}", daemon=True,
            )  # fmt: skip
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open client connections."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        shutdown_connections(self._lock, self._connections)

    def __enter__(self) -> SourceProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SourceProxy {self.url} -> {self.upstream}>"

    # -- counting ---------------------------------------------------------
    def _record(self, key: str, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.counts[key] += 1
            self.requests.append((method, path, headers))

    def _count_bytes(self, counter: collections.Counter, key: str, n: int) -> None:
        if n:
            with self._lock:
                counter[key] += n

    def bytes_out_total(self) -> int:
        """Body bytes relayed to clients since the last reset."""
        with self._lock:
            return sum(self.bytes_out.values())

    def bytes_in_total(self) -> int:
        """Request body bytes forwarded to the upstream since the last reset."""
        with self._lock:
            return sum(self.bytes_in.values())

    def reset_counts(self) -> None:
        """Forget counted and recorded requests, and counted bytes."""
        with self._lock:
            self.counts.clear()
            self.requests.clear()
            self.bytes_out.clear()
            self.bytes_in.clear()
            self.peak.clear()

    # -- concurrency --------------------------------------------------------
    def hold_until(self, key: str, n: int, timeout: float = 5.0) -> None:
        """Hold requests counted as ``key`` until ``n`` of them are in the proxy at
        once (then release them all, once), or ``timeout`` passed: a client allowed
        ``n`` at once shows ``peak[key] == n`` however fast the upstream answers."""
        with self._lock:
            self._gates[key] = (n, threading.Event())
        self._gate_timeout = timeout

    def _enter(self, key: str) -> None:
        with self._lock:
            self.in_flight[key] += 1
            self.peak[key] = max(self.peak[key], self.in_flight[key])
            n, gate = self._gates.get(key, (0, None))
            if gate is not None and self.in_flight[key] >= n:
                gate.set()
        if gate is not None:
            gate.wait(self._gate_timeout)
            gate.set()  # once: after a timeout, nothing more is held

    def _leave(self, key: str) -> None:
        with self._lock:
            self.in_flight[key] -= 1

    # -- fault injection --------------------------------------------------
    def drop_blob_once(self, digest: str, after_bytes: int) -> None:
        """Cut the next successful GET of blob ``digest`` after ``after_bytes`` body bytes.

        Status line and headers (full ``Content-Length``) are sent, then only
        ``after_bytes`` bytes, then the connection is shut down. Later GETs
        (including Range requests) are served normally.
        """
        with self._lock:
            self._drops[digest] = after_bytes

    def _take_drop(self, digest: str | None) -> int | None:
        with self._lock:
            return self._drops.pop(digest, None) if digest else None

    def fail(
        self,
        key: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``times`` requests counted as ``key`` (e.g. ``"GET manifest"``)
        with ``status`` without asking the upstream.

        The default body is a registry error document, e.g. ``TOOMANYREQUESTS``
        for 429; pass ``headers`` such as ``{"Retry-After": "1"}``.
        """
        if body is None:
            code = _ERROR_CODES.get(status, "UNKNOWN")
            body = b'{"errors":[{"code":"%s","message":"injected by SourceProxy"}]}' % code.encode()
        with self._lock:
            self._failures.setdefault(key, []).extend([(status, dict(headers or {}), body)] * times)

    def _take_failure(self, key: str) -> tuple[int, dict, bytes] | None:
        with self._lock:
            queue = self._failures.get(key)
            return queue.pop(0) if queue else None

    def _upstream_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.upstream.startswith("https:") else http.client.HTTPConnection
        return cls(self._upstream_netloc, timeout=self._upstream_timeout)
