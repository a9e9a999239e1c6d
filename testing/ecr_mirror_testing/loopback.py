"""A threaded HTTP server on 127.0.0.1 for a handler class, as a context manager."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no request log, and one way to answer: status, headers, body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # stdlib signature
        pass

    def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response_only(status)
        for name, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class RawListener:
    """Below HTTP, on 127.0.0.1: reads each request up to its blank line, records it
    (without the blank line) and answers it with the bytes given, or with what
    `respond(request)` returns; `close`: one answer per connection."""

    def __init__(self, answer: str | bytes = b"", *, close: bool = False,
                 respond: Callable[[bytes], bytes] | None = None) -> None:
        fixed = answer.encode("latin-1") if isinstance(answer, str) else answer
        self.respond = respond or (lambda _: fixed)
        self.close = close
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            buffer = b""
            while data := sock.recv(65536):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    request, _, buffer = buffer.partition(b"\r\n\r\n")
                    self.requests.append(request)
                    sock.sendall(self.respond(request))
                    if self.close:
                        return

    def stop(self) -> None:
        self._listener.close()
