"""ECR's blob mount, answered on the emulator's registry endpoint (moto's backend).

Real ECR mounts a blob on its registry endpoint (`<account>.dkr.ecr.<region>.
amazonaws.com`): `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<source>`
with `Authorization: Basic <GetAuthorizationToken's token>`. moto has no
registry endpoint: this small server, in the process that runs the emulator, is
it (like ecr_referrers.py), with ECR's documented rules (2026-01):

- the token is the one moto's GetAuthorizationToken gives (else 401);
- the account setting BLOB_MOUNTING (strict_ecr's Get/PutAccountSetting) is
  ENABLED for the account and the region;
- both repositories exist in this registry (same account and region) with the
  same encryption configuration (type and KMS key);
- the blob is in the source repository *and* a manifest there references it
  (a blob merely uploaded to it is not mounted).

Then `201` (Location `/v2/<repo>/blobs/<digest>`, Docker-Content-Digest) and the
layer is in the target for BatchCheckLayerAvailability and PutImage. Otherwise
`202` with an upload session (Location `/v2/<repo>/blobs/uploads/<uuid>`) that
`DELETE` cancels (`204`). `authorize` (IamEnforcer.authorize) sees the mount as
ecr:InitiateLayerUpload on the target and ecr:GetDownloadUrlForLayer on the
source (a denial: `403 DENIED`). `fault` makes it hostile: "wrong-digest" (a
201 naming another blob), "500", "redirect" (a 307 to `redirect_to`), or
"foreign-location" (a 202 whose upload session is on `redirect_to`).

    with EcrMount() as endpoint:        # after start_server(); then
        monkeypatch.setenv("ECR_MIRROR_ECR_REGISTRY_ENDPOINT", endpoint.url)
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecr.models import ecr_backends

from . import strict_ecr
from .loopback import LoopbackServer, QuietHandler

_START = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/?$")
_SESSION = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[0-9a-f-]+)$")
Authorize = Callable[[str, list[tuple[str, str]]], bool]


def referenced(repo, digest: str) -> bool:
    """A manifest of the repository names the blob (as a layer or the config)."""
    for image in list(repo.images):
        try:
            manifest = json.loads(image.image_manifest)
        except ValueError:
            continue
        descriptors = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        if any(isinstance(d, dict) and d.get("digest") == digest for d in descriptors):
            return True
    return False


class _Handler(QuietHandler):
    server: _Server

    def _error(self, status: int, code: str) -> None:
        self._answer(status, {"Content-Type": "application/json"},
                     json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode())

    def _authenticated(self) -> bool:
        server = self.server
        expected = "Basic " + base64.b64encode(
            f"AWS:{strict_ecr.registry_password(server.account)}".encode()).decode()
        with server.lock:
            server.authorizations.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != expected:
            self._error(401, "UNAUTHORIZED")
            return False
        return True

    def do_POST(self) -> None:  # http.server naming
        server = self.server
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with server.lock:
            server.requests["mount" if "mount" in query else "start"] += 1
        m = _START.match(parts.path)
        if not m or not self._authenticated():
            return None if m else self._error(404, "NOT_FOUND")
        backend = ecr_backends[server.account][server.region]
        target, digest, home = m["repo"], query.get("mount", ""), query.get("from", "")
        arn = f"arn:aws:ecr:{server.region}:{server.account}:repository/"
        needs = [("ecr:InitiateLayerUpload", arn + target)]
        if digest and home:
            needs.append(("ecr:GetDownloadUrlForLayer", arn + home))
        if server.authorize is not None and not server.authorize("ecr-registry.MountBlob", needs):
            return self._error(403, "DENIED")
        repo = backend.repositories.get(target)
        if repo is None:
            return self._error(404, "NAME_UNKNOWN")
        if server.fault == "500":
            return self._error(500, "UNKNOWN")
        if server.fault == "redirect":
            return self._answer(307, {"Location": f"{server.redirect_to}{self.path}"})
        if server.fault == "foreign-location":  # a 202 whose session lives elsewhere
            return self._answer(202, {"Location": f"{server.redirect_to}/v2/{target}/blobs/uploads/x"})
        if server.fault == "wrong-digest":
            other = "sha256:" + "0" * 64  # where it says the blob is, but another digest
            return self._answer(201, {"Location": f"/v2/{target}/blobs/{digest}",
                                      "Docker-Content-Digest": other})
        source = backend.repositories.get(home) if home else None
        if source is not None and digest and self._mountable(repo, source, digest):
            with strict_ecr._STATE_LOCK:
                repo.layers[digest] = source.layers[digest]
            with server.lock:
                server.mounted.append((home, target, digest))
            return self._answer(201, {"Location": f"/v2/{target}/blobs/{digest}",
                                      "Docker-Content-Digest": digest})
        session = str(uuid.uuid4())
        with server.lock:
            server.sessions[session] = target
        self._answer(202, {"Location": f"/v2/{target}/blobs/uploads/{session}",
                           "Docker-Upload-UUID": session, "Range": "0-0"})

    def _mountable(self, repo, source, digest: str) -> bool:
        server = self.server
        return (strict_ecr.account_setting(server.account, server.region, "BLOB_MOUNTING") == "ENABLED"
                and repo.encryption_configuration == source.encryption_configuration
                and digest in source.layers and referenced(source, digest))

    def do_DELETE(self) -> None:  # http.server naming
        server = self.server
        with server.lock:
            server.requests["cancel"] += 1
        m = _SESSION.match(urlsplit(self.path).path)
        if not m or not self._authenticated():
            return None if m else self._error(404, "NOT_FOUND")
        with server.lock:
            known = server.sessions.get(m["id"]) == m["repo"]
            if known:
                del server.sessions[m["id"]]
                server.cancelled += 1
        if not known:
            return self._error(404, "BLOB_UPLOAD_UNKNOWN")
        self._answer(204)

    def do_GET(self) -> None:  # anything else: what a hostile redirect target sees
        with self.server.lock:
            self.server.requests["other"] += 1
            self.server.authorizations.append(self.headers.get("Authorization", ""))
        self._error(404, "NOT_FOUND")


class _Server(ThreadingHTTPServer):
    """What the handler reads and the tests look at (set by EcrMount)."""

    region: str
    account: str
    lock: threading.Lock
    requests: Counter
    sessions: dict[str, str]
    cancelled: int
    mounted: list[tuple[str, str, str]]
    authorizations: list[str]
    authorize: Authorize | None
    fault: str | None
    redirect_to: str


class EcrMount(LoopbackServer):
    """The emulated ECR registry endpoint's blob uploads, on 127.0.0.1:<free port>."""

    _server: _Server

    def __init__(self, region: str = "us-east-1", account: str = DEFAULT_ACCOUNT_ID,
                 authorize: Authorize | None = None) -> None:
        super().__init__(_Handler)
        server = self._server
        server.region, server.account, server.authorize = region, account, authorize
        server.lock, server.requests, server.sessions = threading.Lock(), Counter(), {}
        server.cancelled, server.mounted, server.authorizations = 0, [], []
        server.fault, server.redirect_to = None, ""

    @property
    def server(self) -> _Server:
        return self._server
