"""A Docker Hub simulator on 127.0.0.1, in front of a real registry.

Usage::

    with LocalRegistry() as reg, DockerHubSimulator(reg.url, limits={"anonymous": 5}) as hub:
        client = RegistryClient("docker.io", api_host=hub.host, scheme="http", insecure=True)
        client.get_manifest("library/nginx", "latest")
        assert hub.remaining("anonymous") == 4 and hub.counts["token"] == 1

It reproduces what Docker Hub does that matters for rate-limit handling (see
``/work/shared/docs/protocol-facts.md``, "Docker Hub"), with three listeners:

* the registry API (``.url``, ``.host``): every ``/v2/`` request needs
  ``Authorization: Bearer <token>`` whose token covers ``repository:<name>:pull``,
  else ``401`` with ``WWW-Authenticate: Bearer realm="<realm>",service="registry.docker.io",
  scope="repository:<name>:pull"`` (no scope on ``/v2/`` itself; a presented but
  unknown/expired token adds ``error="invalid_token"``, a token for another
  repository ``error="insufficient_scope"``, as distribution's token auth does).
  Manifests, tags and ``/v2/`` are forwarded to the upstream registry (exact
  bytes and headers). Blob ``GET``/``HEAD`` answer ``307`` to the CDN.
  Only ``GET``/``HEAD`` are served: the simulator is read-only (``405``).
* the token service (``.realm`` = ``http://127.0.0.1:P/token``):
  ``GET /token?service=registry.docker.io&scope=...`` (``scope`` may repeat),
  anonymous or HTTP Basic with one of ``accounts``; answers
  ``{"token", "access_token", "expires_in", "issued_at"}``. Tokens are opaque
  and only grant ``pull``.
* the CDN (``.cdn_url``): ``/blobs/<digest>?verify=<opaque>`` streams the blob
  from the upstream (``Range`` passes through: ``206`` + ``Content-Range``), and
  refuses any request carrying ``Authorization`` with ``400`` and Amazon S3's
  "Only one auth mechanism allowed" error (counted as ``"cdn-auth-refused"``).

Rate limit: each principal (``"anonymous"`` or an account name) has a budget
(``limits``, default ``limit``) for a window of ``window`` seconds that is only
advertised: the window never passes by wall time, it resets when the test calls
:meth:`reset_window`. Only manifest ``GET``s that are served (upstream 2xx)
count. Manifest ``GET`` and ``HEAD`` answers carry ``ratelimit-limit:
L;w=W``, ``ratelimit-remaining: R;w=W`` (``x-ratelimit-*`` with
``header_style="x-"``) and ``docker-ratelimit-source: <principal>``. With the
budget spent a manifest ``GET`` gets ``429 TOOMANYREQUESTS`` (Docker Hub's body),
remaining ``0`` and ``Retry-After`` when ``retry_after`` is set; ``HEAD`` is
never counted and never refused for the pull limit.

``counts`` is a ``Counter`` (thread-safe updates) of requests received,
``"<METHOD> <kind>"`` as in :mod:`ecr_mirror_testing.proxy` (``"GET manifest"``,
``"HEAD manifest"``, ``"GET blob"``, ``"GET tags"``, ``"GET other"`` for
``/v2/``), plus ``"GET cdn"``/``"HEAD cdn"``, ``"token"`` (every token request),
and outcomes: ``"401"`` (challenges sent), ``"429"`` (every 429 sent, injected
or not), ``"pull-limit"`` (429s for a spent budget), ``"injected"``,
``"token-refused"`` (wrong credentials), ``"cdn-auth-refused"``, ``"cdn-dropped"``.
``requests`` lists ``(listener, method, path, headers)``.

Bodies are streamed in chunks, never buffered whole. Every listener is a
threaded HTTP/1.1 server with daemon threads; client disconnects are quiet.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import http.client
import json
import logging
import re
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from ecr_mirror_testing.proxy import CHUNK, _hop_by_hop, classify, shutdown_connections

log = logging.getLogger(__name__)

SERVICE = "registry.docker.io"
ANONYMOUS = "anonymous"

_NAME = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)/")
_CDN_PATH = re.compile(r"^/blobs/(?P<digest>[a-z0-9+._-]+:[a-zA-Z0-9=_-]+)$")

API_VERSION = ("Docker-Distribution-Api-Version", "registry/2.0")

# Headers passed from the client to the upstream when the CDN fetches a blob.
_CDN_FORWARD = ("range", "if-range", "accept", "user-agent")

_S3_AUTH_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the "
    "X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization "
    "header should be specified</Message><ArgumentName>Authorization</ArgumentName>"
    "<ArgumentValue>{value}</ArgumentValue><RequestId>{rid}</RequestId>"
    "<HostId>{hid}</HostId></Error>"
)
_S3_ACCESS_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>AccessDenied</Code><Message>{message}</Message>"
    "<RequestId>{rid}</RequestId><HostId>{hid}</HostId></Error>"
)


def _json(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def pull_limit_body(principal: str) -> bytes:
    """Docker Hub's 429 body; accounts get "pull rate limit" without "unauthenticated"."""
    who = "unauthenticated pull rate limit" if principal == ANONYMOUS else "pull rate limit"
    return _json({"errors": [{"code": "TOOMANYREQUESTS",
                              "message": f"You have reached your {who}. "
                                         "https://www.docker.com/increase-rate-limit"}]})


def _default_fault_body(status: int) -> bytes:
    if status == 429:
        code, message = "TOOMANYREQUESTS", "Too Many Requests (injected by DockerHubSimulator)"
    elif status == 401:
        code, message = "UNAUTHORIZED", "authentication required (injected by DockerHubSimulator)"
    elif status >= 500:
        code, message = "UNAVAILABLE", "service unavailable (injected by DockerHubSimulator)"
    else:
        code, message = "UNKNOWN", "injected by DockerHubSimulator"
    return _json({"errors": [{"code": code, "message": message}]})


@dataclass(frozen=True)
class _Token:
    principal: str
    repositories: frozenset[str]  # names with pull access
    expires_at: float  # time.monotonic()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sim: DockerHubSimulator

    def handle_error(self, request, client_address) -> None:
        """Client disconnects are normal (dropped downloads): be quiet."""
        if isinstance(sys.exc_info()[1], (OSError, http.client.HTTPException)):
            return
        log.exception("DockerHubSimulator: error while handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """What the three listeners share: connection tracking, sending, relaying."""

    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _Server
    listener = ""

    @property
    def sim(self) -> DockerHubSimulator:
        return self.server.sim

    def log_message(self, format, *args) -> None:  # stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and the peer's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.sim._lock:
            self.sim._connections.add(self.connection)

    def finish(self) -> None:
        with self.sim._lock:
            self.sim._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._discard_body()
        self.handle_request()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def handle_request(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------
    def _discard_body(self) -> None:
        """Read and drop a request body so that the connection stays usable."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self._skip(size)
                self.rfile.readline(1024)
        else:
            self._skip(int(self.headers.get("Content-Length") or 0))

    def _skip(self, n: int) -> None:
        while n > 0:
            data = self.rfile.read(min(CHUNK, n))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            n -= len(data)

    def _send(self, status: int, body: bytes = b"", headers=(), content_type: str | None = "application/json") -> None:
        self.send_response_only(status)
        names = set()
        for name, value in headers:
            names.add(name.lower())
            self.send_header(name, value)
        if content_type and "content-type" not in names:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_fault(self, fault: tuple[int, dict, bytes]) -> None:
        status, headers, body = fault
        self.sim._count("injected")
        if status == 429:
            self.sim._count("429")
        self._send(status, body, list(headers.items()))

    def _upstream(self, method: str, path: str, headers) -> http.client.HTTPResponse:
        """Send ``method path`` (no body) to the upstream; the caller closes ``resp``."""
        conn = self.sim._upstream_connection()
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.sim._upstream_netloc)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        resp._sim_conn = conn  # closed together with the response
        return resp

    def _forwarded_headers(self) -> list[tuple[str, str]]:
        skip = _hop_by_hop(self.headers) | {"authorization", "content-length"}
        return [(n, v) for n, v in self.headers.items() if n.lower() not in skip]

    def _relay(self, resp: http.client.HTTPResponse, *, extra=(), drop=None) -> None:
        """Stream ``resp`` to the client; ``drop=(after_bytes, callback)`` cuts it short."""
        try:
            self.send_response_only(resp.status, resp.reason)
            replaced = {name.lower() for name, _ in extra}
            skip = _hop_by_hop(resp.msg) | {"content-length"} | replaced
            for name, value in resp.msg.items():
                if name.lower() in skip:
                    continue
                if name.lower() in ("location", "link"):
                    value = value.replace(self.sim.upstream, self.sim.url)
                self.send_header(name, value)
            for name, value in extra:
                self.send_header(name, value)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            length = resp.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
            elif no_body:
                pass
            elif resp.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if no_body:
                return
            chunked = length is None and resp.chunked
            budget, on_drop = drop if drop is not None else (None, None)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                if budget == 0:
                    break
                n = resp.readinto(view if budget is None else view[:min(CHUNK, budget)])
                if not n:
                    break
                piece = view[:n]
                if budget is not None:
                    budget -= n
                if chunked:
                    self.wfile.write(b"%X\r\n" % n + bytes(piece) + b"\r\n")
                else:
                    self.wfile.write(piece)
            if budget is not None:
                self.sim._count("cdn-dropped")
                if on_drop is not None:
                    on_drop()
                self._abort()
                return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            resp.close()
            resp._sim_conn.close()

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _RegistryHandler(_Handler):
    listener = "registry"

    def handle_request(self) -> None:
        sim = self.sim
        path = urlsplit(self.path).path
        kind, digest = classify(self.path)
        key = f"{self.command} {kind}"
        sim._record(self.listener, key, self.command, self.path, self.headers)
        if not (path == "/v2" or path.startswith("/v2/")):
            self._send(404, _json({"errors": [{"code": "NOT_FOUND", "message": "not found"}]}))
            return
        m = _NAME.match(path)
        name = m.group("name") if m else None

        principal, error = sim._authenticate(self.headers.get("Authorization"), name)
        if principal is None:
            self._challenge(name, error)
            return
        if self.command not in ("GET", "HEAD"):
            self._send(405, _json({"errors": [{"code": "UNSUPPORTED",
                                               "message": "the Docker Hub simulator is read-only"}]}))
            return
        fault = sim._take_failure(key)
        if fault is not None:
            self._send_fault(fault)
            return
        if kind == "manifest":
            self._manifest(principal)
        elif kind == "blob":
            location = f"{sim.cdn_url}/blobs/{digest}?verify={quote(sim._sign(name, digest))}"
            self._send(307, b"", [("Location", location), API_VERSION], content_type=None)
        else:
            self._forward()

    def _challenge(self, name: str | None, error: str | None) -> None:
        sim = self.sim
        sim._count("401")
        header = f'Bearer realm="{sim.realm}",service="{SERVICE}"'
        detail = None
        if name is not None:
            header += f',scope="repository:{name}:pull"'
            detail = [{"Type": "repository", "Class": "", "Name": name, "Action": "pull"}]
        if error:
            header += f',error="{error}"'
        body = _json({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                  "detail": detail}]})
        self._send(401, body, [("WWW-Authenticate", header), API_VERSION])

    def _forward(self, extra=()) -> None:
        try:
            resp = self._upstream(self.command, self.path, self._forwarded_headers())
        except (OSError, http.client.HTTPException) as exc:
            self.close_connection = True
            self._send(502, f"upstream error: {exc}".encode(), content_type="text/plain")
            return
        self._relay(resp, extra=extra)

    def _manifest(self, principal: str) -> None:
        sim = self.sim
        if self.command == "HEAD":
            self._forward(extra=sim._rate_headers(principal, sim._shown_remaining(principal)))
            return
        shown = sim._reserve_pull(principal)
        if shown is None:
            sim._count("429")
            sim._count("pull-limit")
            headers = [*sim._rate_headers(principal, 0), API_VERSION]
            if sim.retry_after is not None:
                headers.append(("Retry-After", str(sim.retry_after)))
            self._send(429, pull_limit_body(principal), headers)
            return
        try:
            resp = self._upstream("GET", self.path, self._forwarded_headers())
        except (OSError, http.client.HTTPException) as exc:
            sim._refund_pull(principal)
            self.close_connection = True
            self._send(502, f"upstream error: {exc}".encode(), content_type="text/plain")
            return
        if 200 <= resp.status < 300:
            sim._commit_pull(principal)
        else:
            sim._refund_pull(principal)
            shown = sim._shown_remaining(principal)
        self._relay(resp, extra=sim._rate_headers(principal, shown))


class _TokenHandler(_Handler):
    listener = "token"

    def handle_request(self) -> None:
        sim = self.sim
        sim._record(self.listener, "token", self.command, self.path, self.headers)
        parts = urlsplit(self.path)
        if parts.path != "/token":
            self._send(404, _json({"details": "not found"}))
            return
        if self.command not in ("GET", "HEAD"):
            self._send(405, _json({"details": "use GET"}))
            return
        fault = sim._take_failure("token")
        if fault is not None:
            self._send_fault(fault)
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        service = (query.get("service") or [""])[-1]
        if service != SERVICE:
            self._send(400, _json({"details": f"unknown service {service!r}, expected {SERVICE!r}"}))
            return
        principal = self._principal()
        if principal is None:
            sim._count("token-refused")
            self._send(401, _json({"details": "incorrect username or password"}),
                       [("WWW-Authenticate", 'Basic realm="Docker Hub"')])
            return
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        token, ttl, issued = sim._issue(principal, scopes)
        self._send(200, _json({"token": token, "access_token": token, "expires_in": ttl,
                               "issued_at": issued}))

    def _principal(self) -> str | None:
        header = self.headers.get("Authorization")
        if not header:
            return ANONYMOUS
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if sep and user in self.sim.accounts and secrets.compare_digest(
                self.sim.accounts[user].encode(), password.encode()):
            return user
        return None


class _CdnHandler(_Handler):
    listener = "cdn"

    def handle_request(self) -> None:
        sim = self.sim
        key = f"{self.command} cdn"
        sim._record(self.listener, key, self.command, self.path, self.headers)
        rid, hid = secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
        auth = self.headers.get("Authorization")
        if auth is not None:
            sim._count("cdn-auth-refused")
            scheme = auth.split(" ", 1)[0]
            body = _S3_AUTH_ERROR.format(value=f"{scheme} ***", rid=rid, hid=hid).encode()
            self._send(400, body, content_type="application/xml")
            return
        parts = urlsplit(self.path)
        m = _CDN_PATH.match(parts.path)
        verify = (parse_qs(parts.query).get("verify") or [""])[-1]
        target = sim._verified(verify)
        if self.command not in ("GET", "HEAD") or m is None or target is None or target[1] != m.group("digest"):
            body = _S3_ACCESS_DENIED.format(message="Access Denied", rid=rid, hid=hid).encode()
            self._send(403, body, content_type="application/xml")
            return
        fault = sim._take_failure(key)
        if fault is not None:
            self._send_fault(fault)
            return
        name, digest = target
        headers = [(n, v) for n, v in self.headers.items() if n.lower() in _CDN_FORWARD]
        try:
            resp = self._upstream(self.command, f"/v2/{name}/blobs/{digest}", headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close_connection = True
            self._send(502, f"upstream error: {exc}".encode(), content_type="text/plain")
            return
        drop = None
        if self.command == "GET" and resp.status in (200, 206):
            drop = sim._take_drop(digest)
        self._relay(resp, drop=drop)


class DockerHubSimulator:
    """Docker Hub's registry API, token service and blob CDN on 127.0.0.1, in front of ``upstream``.

    ``accounts``: ``{username: password}`` accepted by the token service.
    ``limits``: pull budget per principal (``"anonymous"`` or a username);
    ``limit`` for any other. ``window``: the advertised window in seconds (it
    never elapses; see :meth:`reset_window`). ``header_style``: ``""`` for
    ``ratelimit-*`` or ``"x-"`` for ``x-ratelimit-*``. ``retry_after``: seconds
    for a ``Retry-After`` header on a pull-limit 429 (none by default, like Hub).
    ``token_ttl``: the tokens' lifetime in seconds (``expires_in``).
    """

    def __init__(
        self,
        upstream: str,
        *,
        accounts: dict[str, str] | None = None,
        limits: dict[str, int] | None = None,
        limit: int = 100,
        window: int = 21600,
        header_style: str = "",
        retry_after: int | None = None,
        token_ttl: int = 300,
        upstream_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL: {upstream!r}")
        if header_style not in ("", "x-"):
            raise ValueError('header_style must be "" or "x-"')
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self._upstream_netloc = parts.netloc
        self._upstream_timeout = upstream_timeout
        self.accounts = dict(accounts or {})
        self.limits = dict(limits or {})
        self.default_limit = limit
        self.window = window
        self.header_style = header_style
        self.retry_after = retry_after
        self.token_ttl = token_ttl

        self.counts: collections.Counter[str] = collections.Counter()
        self.requests: list[tuple[str, str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._tokens: dict[str, _Token] = {}
        self._signed: dict[str, tuple[str, str]] = {}
        self._remaining: dict[str, int] = {}
        self._pulls: collections.Counter[str] = collections.Counter()
        self._countdown: int | None = None
        self._failures: dict[str, list[tuple[int, dict, bytes]]] = {}
        self._drops: dict[str, tuple[int, bool]] = {}

        self._servers: dict[str, _Server] = {}
        for role, handler in (("registry", _RegistryHandler), ("token", _TokenHandler), ("cdn", _CdnHandler)):
            server = _Server(("127.0.0.1", 0), handler)
            server.sim = self
            self._servers[role] = server
        self.port = self._servers["registry"].server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.realm = f"http://127.0.0.1:{self._servers['token'].server_address[1]}/token"
        self.cdn_url = f"http://127.0.0.1:{self._servers['cdn'].server_address[1]}"
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------
    def start(self) -> DockerHubSimulator:
        if not self._threads:
            for role, server in self._servers.items():
                thread = threading.Thread(
                    target=server.serve_forever, kwargs={"poll_interval": 0.05},
                    name=f"DockerHubSimulator-{role}-{server.server_address[1]}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the three listeners and close open client connections (idempotent)."""
        if self._threads:
            # shutdown() waits for the serve_forever loop: stop the three at once.
            stoppers = [threading.Thread(target=server.shutdown, daemon=True)
                        for server in self._servers.values()]
            for stopper in stoppers:
                stopper.start()
            for thread in (*stoppers, *self._threads):
                thread.join(timeout=5)
            self._threads = []
        for server in self._servers.values():
            server.server_close()
        shutdown_connections(self._lock, self._connections)

    def __enter__(self) -> DockerHubSimulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<DockerHubSimulator {self.url} (token {self.realm}, cdn {self.cdn_url}) -> {self.upstream}>"

    # -- counting ---------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _record(self, listener: str, key: str, method: str, path: str, headers) -> None:
        with self._lock:
            self.counts[key] += 1
            self.requests.append((listener, method, path, dict(headers.items())))

    def reset_counts(self) -> None:
        """Forget ``counts``, ``requests`` and ``pulls`` (not the budgets: see reset_window)."""
        with self._lock:
            self.counts.clear()
            self.requests.clear()
            self._pulls.clear()

    # -- rate limit -------------------------------------------------------
    def limit(self, principal: str) -> int:
        return self.limits.get(principal, self.default_limit)

    def remaining(self, principal: str = ANONYMOUS) -> int:
        """Pulls left for ``principal`` in the current window (as the headers show it)."""
        with self._lock:
            return self._shown_locked(principal)

    def pulls(self, principal: str = ANONYMOUS) -> int:
        """Manifest GETs served to ``principal`` (counted pulls) since the last reset_counts()."""
        with self._lock:
            return self._pulls[principal]

    def reset_window(self) -> None:
        """A new window: every budget is full again; fail_manifest_get_after() is cancelled."""
        with self._lock:
            self._remaining.clear()
            self._countdown = None

    def set_remaining(self, principal: str, n: int) -> None:
        """Set what is left of ``principal``'s budget in the current window."""
        with self._lock:
            self._remaining[principal] = max(0, n)

    def fail_manifest_get_after(self, n: int) -> None:
        """Serve ``n`` more manifest GETs (any principal), then answer every manifest GET
        with the pull-limit 429 until reset_window().

        As if other clients sharing the principal (the same IP or account) spent the
        rest of the budget meanwhile: the ``n`` served answers show the principal's own
        remaining, so a client cannot see the 429 coming; from then on the headers
        (HEAD included) show remaining 0.
        """
        with self._lock:
            self._countdown = max(0, n)

    def _budget_locked(self, principal: str) -> int:
        if principal not in self._remaining:
            self._remaining[principal] = self.limit(principal)
        return self._remaining[principal]

    def _shown_locked(self, principal: str) -> int:
        left = self._budget_locked(principal)
        return 0 if self._countdown is not None and self._countdown <= 0 else left

    def _shown_remaining(self, principal: str) -> int:
        with self._lock:
            return self._shown_locked(principal)

    def _reserve_pull(self, principal: str) -> int | None:
        """Take one pull from the budget; the remaining to show, or None when spent."""
        with self._lock:
            if self._shown_locked(principal) <= 0:
                return None
            self._remaining[principal] -= 1
            shown = self._remaining[principal]
            if self._countdown is not None:
                self._countdown -= 1
            return shown

    def _refund_pull(self, principal: str) -> None:
        with self._lock:
            self._remaining[principal] = min(self.limit(principal), self._budget_locked(principal) + 1)
            if self._countdown is not None:
                self._countdown += 1

    def _commit_pull(self, principal: str) -> None:
        with self._lock:
            self._pulls[principal] += 1

    def _rate_headers(self, principal: str, remaining: int) -> list[tuple[str, str]]:
        prefix = self.header_style
        return [
            (f"{prefix}ratelimit-limit", f"{self.limit(principal)};w={self.window}"),
            (f"{prefix}ratelimit-remaining", f"{remaining};w={self.window}"),
            ("docker-ratelimit-source", principal),
        ]

    # -- tokens -----------------------------------------------------------
    def _issue(self, principal: str, scopes: list[str]) -> tuple[str, int, str]:
        repositories = set()
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name and "pull" in actions.split(","):
                repositories.add(name)
        token = "dhsim_" + secrets.token_urlsafe(32)
        issued = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        with self._lock:
            self._tokens[token] = _Token(principal, frozenset(repositories),
                                         time.monotonic() + self.token_ttl)
        return token, self.token_ttl, issued

    def _authenticate(self, header: str | None, name: str | None) -> tuple[str | None, str | None]:
        """``(principal, None)`` for a valid token covering ``name``, else ``(None, error)``."""
        if not header:
            return None, None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None, None
        with self._lock:
            token = self._tokens.get(value.strip())
        if token is None or time.monotonic() >= token.expires_at:
            return None, "invalid_token"
        if name is not None and name not in token.repositories:
            return None, "insufficient_scope"
        return token.principal, None

    def expire_tokens(self) -> None:
        """Every token issued so far is invalid from now on (the next use gets a 401)."""
        with self._lock:
            self._tokens.clear()

    @property
    def valid_tokens(self) -> int:
        """How many issued tokens are still valid."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._tokens.values() if now < t.expires_at)

    # -- CDN --------------------------------------------------------------
    def _sign(self, name: str, digest: str) -> str:
        verify = secrets.token_urlsafe(24)
        with self._lock:
            self._signed[verify] = (name, digest)
        return verify

    def _verified(self, verify: str) -> tuple[str, str] | None:
        with self._lock:
            return self._signed.get(verify)

    # -- fault injection --------------------------------------------------
    def fail_next(self, kind: str, status: int = 429, *, times: int = 1,
                  body: bytes | str | None = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests of ``kind`` with ``status`` (not asking the upstream).

        ``kind`` is a counts key: ``"GET manifest"``, ``"HEAD manifest"``, ``"GET blob"``,
        ``"GET tags"``, ``"GET cdn"``, ``"token"``. On the registry the fault comes after
        authentication (a valid token is still required) and never consumes the pull
        budget. The default body is a registry error document (``TOOMANYREQUESTS`` for
        429, ``UNAVAILABLE`` for 5xx); pass ``headers`` such as ``{"Retry-After": "1"}``.
        """
        if body is None:
            body = _default_fault_body(status)
        elif isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._failures.setdefault(kind, []).extend([(status, dict(headers or {}), body)] * times)

    def _take_failure(self, key: str) -> tuple[int, dict, bytes] | None:
        with self._lock:
            queue = self._failures.get(key)
            return queue.pop(0) if queue else None

    def drop_blob_once(self, digest: str, after_bytes: int, *, expire_tokens: bool = False) -> None:
        """Cut the next successful CDN GET of ``digest`` after ``after_bytes`` body bytes.

        The full ``Content-Length`` is announced, ``after_bytes`` bytes are sent, then
        (with ``expire_tokens=True``) every token is expired, then the connection is
        shut down. Later GETs (Range included) are served normally.
        """
        with self._lock:
            self._drops[digest] = (after_bytes, expire_tokens)

    def _take_drop(self, digest: str):
        with self._lock:
            entry = self._drops.pop(digest, None)
        if entry is None:
            return None
        after_bytes, expire = entry
        return after_bytes, (self.expire_tokens if expire else None)

    def _upstream_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.upstream.startswith("https:") else http.client.HTTPConnection
        return cls(self._upstream_netloc, timeout=self._upstream_timeout)
