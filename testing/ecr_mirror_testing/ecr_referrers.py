"""ECR's referrers API, answered from the emulator's images (moto's backend).

Real ECR answers `GET /v2/<repo>/referrers/<digest>` on its registry endpoint
(`<account>.dkr.ecr.<region>.amazonaws.com`) with an OCI index of the
descriptors of the images whose `subject` is `<digest>` (artifactType and
annotations included) and honours the `artifactType` filter, saying so in
`OCI-Filters-Applied`. moto has no registry endpoint: this small server, in
the process that runs the emulator, is it. Authentication is not checked.

    with EcrReferrers() as endpoint:              # after start_server()
        RegistryClient(endpoint.host, insecure=True).list_referrers("mirror/app", digest)
"""

from __future__ import annotations

import re
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecr.models import ecr_backends

from .loopback import QuietHandler
from .referrers_api import describe, referrers_answer

_PATH = re.compile(r"^/v2/(?P<repo>.+)/referrers/(?P<digest>[^/]+)$")
_NOT_FOUND = b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository not found"}]}'


def referrers_in_ecr(repository: str, digest: str, *, region: str = "us-east-1",
                     account: str = DEFAULT_ACCOUNT_ID) -> list[dict] | None:
    """Descriptors of the images of `repository` whose subject is `digest`; None: no repository."""
    repo = ecr_backends[account][region].repositories.get(repository)
    if repo is None:
        return None
    found = []
    for image in list(repo.images):
        described = describe(image.image_manifest.encode(), image.image_manifest_media_type)
        if described and described[0] == digest:
            found.append(described[1])
    return found


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:  # http.server naming
        parts = urlsplit(self.path)
        m = _PATH.match(parts.path)
        found = referrers_in_ecr(m["repo"], m["digest"], region=self.server.region) if m else None
        if found is None:
            status, headers, body = 404, {"Content-Type": "application/json"}, _NOT_FOUND
        else:
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            status, headers, body = referrers_answer(found, parts.path, query, page_size=100)
        self._answer(status, headers, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    region: str


class EcrReferrers:
    """The referrers API of the emulated ECR registry, on 127.0.0.1:<free port>."""

    def __init__(self, region: str = "us-east-1") -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.region = region
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.1})

    def __enter__(self) -> EcrReferrers:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
