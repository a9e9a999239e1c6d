"""A registry on 127.0.0.1 that serves given manifest bytes verbatim, for
manifests the real distribution registry would refuse to store (UTF-16, a
descriptor with `size: "12abc"`). No auth; blobs are 404.

    with FixedRegistry({"x/y:1": (raw, media_type)}) as reg:
        mirror.copy(f"{reg.host}/x/y:1", ...)      # with reg.host marked insecure
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from http.server import BaseHTTPRequestHandler

from ecr_mirror_testing.loopback import LoopbackServer

_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


class FixedRegistry(LoopbackServer):
    def __init__(self, manifests: dict[str, tuple[bytes, str]]) -> None:
        self.manifests = {}
        for image, (raw, media_type) in manifests.items():
            name, _, tag = image.rpartition(":")
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            self.manifests[(name, tag)] = self.manifests[(name, digest)] = (raw, media_type, digest)
        self.counts: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool) -> None:
                outer.counts[f"{self.command} {'manifest' if 'manifests' in self.path else 'other'}"] += 1
                m = _MANIFEST.match(self.path)
                found = m and outer.manifests.get((m["name"], m["ref"]))
                if self.path == "/v2/":
                    raw, headers, status = b"{}", {"Content-Type": "application/json"}, 200
                elif found:
                    raw, media_type, digest = found
                    headers, status = {"Content-Type": media_type, "Docker-Content-Digest": digest}, 200
                else:
                    raw, headers, status = b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', {}, 404
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if with_body:
                    self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
