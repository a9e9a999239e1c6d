"""HEADs over plain kept-alive sockets: the bottom of the stack, made lean.

A warm plan is one HEAD per tag, and requests' and urllib3's per-request work
(preparing, pooling, wrapping the answer) costs about three times the exchange
itself. A HEAD has no body either way, so `LeanHeads` sends it over a few kept-
alive connections per origin (written and read by `headwire`, not `http.client`,
whose `email`-based header parsing cost a third of it) and hands back a `requests.Response`
(status, headers, an empty body): every layer above (authorization, redirects,
rate limits, the pull gate, retries, counting) sees what it saw before.

What the session's adapter does for a connection, this does the same way: each
new connection is checked by the peer guard once connected, before a byte (nor
a TLS hello) is sent; TLS is verified with requests' CA bundle (or the one
given), except where `verify` is False (the registry marked insecure); a kept
connection the server closed is not reused. Requests that would go through a
proxy are not sent here (`Sender` keeps them on the adapter).
"""

from __future__ import annotations

import datetime
import http.client
import io
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from requests.cookies import RequestsCookieJar, cookiejar_from_dict
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.util.wait import wait_for_read

from .errors import RedirectRefused
from .headwire import Answer, read_answer, request_bytes
from .redirects import PeerRefused

_Key = tuple[str, str, bool | str]


#: An http(s) URL with nothing that `urlsplit` would strip or refuse: an ASCII host
#: (no user, no IPv6 brackets), no whitespace or control character, no query, no fragment.
_PLAIN_URL = re.compile(r"(https?)://([A-Za-z0-9._~%!$&'()*+,;=:-]+)(/[^?#\x00-\x20\x7f]*)?").fullmatch


def split_plain(url: str) -> tuple[str, str, str] | None:
    """(scheme, netloc, path) of a plain URL, as `urlsplit` splits it; None for
    another (then `urlsplit` splits it). A HEAD's URL is plain, and new each time:
    `urlsplit` (cached per URL) costs more than the rest of what is asked of it."""
    plain = _PLAIN_URL(url)
    return (plain[1], plain[2], plain[3] or "") if plain else None


class _Connection:
    """A connected socket and the `Host` its requests carry."""

    __slots__ = ("host", "sock")

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host

    def close(self) -> None:
        self.sock.close()


class LeanHeads:
    """Kept-alive connections per (scheme, host, verify), at most `size` kept each."""

    def __init__(self, check_peer: Callable[[str, str], None], *, timeout: tuple[float, float],
                 size: int) -> None:
        self._check_peer = check_peer
        self.timeout = timeout
        self.size = size
        self._idle: dict[_Key, list[_Connection]] = {}
        self._contexts: dict[bool | str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def send(self, url: str, headers: dict[str, str | bytes], verify: bool | str) -> requests.Response:
        """HEAD `url`; a connection or TLS failure is raised as requests' `ConnectionError`
        (its cause kept, for `sender.connection_failed` and `redirects.refusal_in`)."""
        plain = split_plain(url)
        if plain is not None:
            scheme, netloc, path = plain[0], plain[1], plain[2] or "/"
        else:
            parts = urlsplit(url)
            scheme, netloc = parts.scheme, parts.netloc
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (scheme, netloc.lower(), verify)
        connection = self._take(key)
        try:
            if connection is None:
                parts = urlsplit(url)
                connection = self._connect(scheme, parts.hostname or "", parts.port, verify)
            connection.sock.sendall(request_bytes(path, connection.host, headers))
            # A reader per answer, as http.client makes one: whatever it read past the
            # headers (a body a HEAD should not have) goes with it, and what is still
            # to come makes `_take` drop the connection.
            with connection.sock.makefile("rb") as reader:
                answer = read_answer(reader)
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a header
            # value refused (a line break in a token): typed, as requests' InvalidHeader
            if connection is not None:
                connection.close()
            raise requests.exceptions.ConnectionError(exc) from exc
        if answer.will_close:
            connection.close()
        else:
            self._give(key, connection)
        return _response(url, answer)

    def close(self) -> None:
        """Close every kept connection (one in use is closed when its HEAD is done,
        as it finds no room: `size` is then 0)."""
        with self._lock:
            idle, self._idle, self.size = self._idle, {}, 0
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take(self, key: _Key) -> _Connection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None:
                return None
            if not wait_for_read(connection.sock, timeout=0.0):
                return connection
            connection.close()  # the server closed it (or sent what nobody asked for)

    def _give(self, key: _Key, connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.size:
                idle.append(connection)
                return
        connection.close()

    def _connect(self, scheme: str, host: str, port: int | None,
                 verify: bool | str) -> _Connection:
        https = scheme == "https"
        port = port or (443 if https else 80)
        sock = socket.create_connection((host, port), timeout=self.timeout[0])
        try:
            self._check_peer(host, sock.getpeername()[0])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if https:
                sock = self._context(verify).wrap_socket(sock, server_hostname=host)
        except RedirectRefused as exc:
            sock.close()
            raise PeerRefused(exc) from None
        except BaseException:
            sock.close()
            raise
        sock.settimeout(self.timeout[1])
        name = f"[{host}]" if ":" in host else host
        # `Host: name`, not `name:443` (nor `name:80`), as urllib3 sends it
        return _Connection(sock, name if port == (443 if https else 80) else f"{name}:{port}")

    def _context(self, verify: bool | str) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get(verify)
            if context is None:
                context = self._contexts[verify] = _tls_context(verify)
            return context


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    """What requests verifies with: its CA bundle, the bundle or directory given, or nothing."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    where = DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
    if os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where)


def _response(url: str, answer: Answer) -> requests.Response:
    store: dict[str, tuple[str, str]] = {}
    for name, value in answer.headers:  # repeated headers joined, as urllib3 does
        key = name.lower()
        seen = store.get(key)
        store[key] = (name, f"{seen[1]}, {value}") if seen else (name, value)
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    headers._store = store  # type: ignore[attr-defined]  # what its __setitem__ fills, filled at once
    return HeadResponse(url, answer.status, answer.reason, headers)


class HeadResponse(requests.Response):
    """A `requests.Response` with no body, made without `Response.__init__`'s cost
    (most of it an empty cookie jar, made here only if asked for): every attribute
    that `__init__` sets is set, so it is a Response to whoever reads it."""

    def __init__(self, url: str, status: int, reason: str,  # no super().__init__: its cost is what is saved
                 headers: CaseInsensitiveDict[str]) -> None:
        self._content = b""  # read already (and again, after a close, as urllib3 allows)
        self._content_consumed = True
        self._next = None
        self.status_code = status
        self.headers = headers
        self.raw = io.BytesIO(b"")
        self.url = url
        self.encoding = None
        self.history = []
        self.reason = reason
        self.elapsed = _NO_TIME
        self.request = None  # type: ignore[assignment]  # as Response() leaves it

    @property
    def cookies(self) -> RequestsCookieJar:
        jar: RequestsCookieJar | None = self.__dict__.get("_cookies")
        if jar is None:
            jar = self.__dict__["_cookies"] = cookiejar_from_dict({})
        return jar

    @cookies.setter
    def cookies(self, jar: RequestsCookieJar) -> None:
        self.__dict__["_cookies"] = jar


_NO_TIME = datetime.timedelta(0)
