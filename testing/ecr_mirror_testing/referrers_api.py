"""A source registry that serves the OCI 1.1 referrers API, for tests.

Debian's distribution 2.8.2 (our real registry) stores manifests with a
`subject` but answers 404 to `GET /v2/<name>/referrers/<digest>`. This is the
counting proxy of :mod:`ecr_mirror_testing.proxy` in front of it, which
remembers every manifest pushed THROUGH it and answers the referrers API from
them as the distribution spec 1.1 says: an OCI image index of descriptors
(`artifactType` = the manifest's, else its config's media type; its
annotations), the `artifactType` filter with `OCI-Filters-Applied`, and pages
of `page_size` descriptors linked by `Link: <...>; rel="next"`. Everything
else is the real registry's answer.

    with ReferrersProxy(registry.url, page_size=2) as source:
        make_sbom(source.url, "team/app", image)   # pushed through it: listed
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from .proxy import SourceProxy, _Handler, classify

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_MANIFEST_PUT = re.compile(r"^/v2/(?P<repo>.+)/manifests/[^/]+$")
_REFERRERS = re.compile(r"^/v2/(?P<repo>.+)/referrers/(?P<digest>[^/]+)$")


class _ReferrersHandler(_Handler):
    server: object

    def _request_body(self):
        body, framing = super()._request_body()
        m = _MANIFEST_PUT.match(urlsplit(self.path).path)
        if self.command != "PUT" or not m or body is None:
            return body, framing
        data = b"".join(body)
        self.server.proxy.remember(m["repo"], data, self.headers.get("Content-Type"))  # type: ignore[attr-defined]
        return iter([data]), "length"

    def _forward(self) -> None:
        parts = urlsplit(self.path)
        m = _REFERRERS.match(parts.path)
        proxy = self.server.proxy  # type: ignore[attr-defined]
        if self.command == "GET" and (failure := proxy._take_digest_failure(parts.path)):
            proxy._record("GET manifest", self.command, self.path, dict(self.headers.items()))
            return self._send_injected(*failure)
        if self.command != "GET" or not m:
            super()._forward()
            if self.command == "GET" and (action := proxy._take_after_get(parts.path)):
                action()
            return None
        kind, _ = classify(self.path)
        key = f"GET {kind}"
        proxy._record(key, self.command, self.path, dict(self.headers.items()))
        injected = proxy._take_failure(key)
        if injected is not None:
            return self._send_injected(*injected)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        status, headers, body = proxy.answer(m["repo"], m["digest"], query)
        self._send_injected(status, headers, body)


class ReferrersProxy(SourceProxy):
    """A `SourceProxy` that also answers the referrers API (see the module)."""

    handler_class = _ReferrersHandler

    def __init__(self, upstream: str, *, page_size: int = 100, filters: bool = True, **kwargs) -> None:
        super().__init__(upstream, **kwargs)
        self.page_size = page_size
        #: False: ignore `artifactType` (the client must filter), as registries may.
        self.filters = filters
        self._referrers: dict[tuple[str, str], list[dict]] = {}
        self._digest_failures: dict[str, list[tuple[int, dict, bytes]]] = {}
        self._after_get: dict[str, Callable[[], object]] = {}

    def fail_manifest(self, digest: str, status: int, body: bytes, *, times: int = 1) -> None:
        """Answer the next `times` GETs of manifest `digest` with `status` and `body`
        (replacing failures still queued for it; `times=0` clears them)."""
        with self._lock:
            self._digest_failures[digest] = [(status, {}, body)] * times

    def after_get(self, digest: str, action: Callable[[], object]) -> None:
        """Run `action` once, right after the next GET of manifest `digest` was answered
        (e.g. push something upstream in the middle of a copy)."""
        with self._lock:
            self._after_get[digest] = action

    def _take_after_get(self, path: str) -> Callable[[], object] | None:
        if "/manifests/" not in path:
            return None
        with self._lock:
            return self._after_get.pop(path.rsplit("/", 1)[-1], None)

    def _take_digest_failure(self, path: str) -> tuple[int, dict, bytes] | None:
        if "/manifests/" not in path:
            return None
        with self._lock:
            queue = self._digest_failures.get(path.rsplit("/", 1)[-1])
            return queue.pop(0) if queue else None

    def remember(self, repo: str, raw: bytes, media_type: str | None) -> None:
        described = describe(raw, media_type)
        if described is None:
            return
        subject, descriptor = described
        with self._lock:
            listed = self._referrers.setdefault((repo, subject), [])
            if descriptor["digest"] not in {d["digest"] for d in listed}:
                listed.append(descriptor)

    def answer(self, repo: str, digest: str, query: dict[str, str]) -> tuple[int, dict, bytes]:
        with self._lock:
            found = list(self._referrers.get((repo, digest), []))
        return referrers_answer(found, f"/v2/{repo}/referrers/{digest}", query,
                                page_size=self.page_size, filters=self.filters)


def describe(raw: bytes, media_type: str | None) -> tuple[str, dict] | None:
    """(subject digest, the descriptor a referrers listing gives) of a manifest
    with a `subject`; None for any other manifest."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    subject = body.get("subject") if isinstance(body, dict) else None
    if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
        return None
    descriptor = {"mediaType": body.get("mediaType") or (media_type or "").split(";")[0],
                  "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    # The spec: the manifest's artifactType, else its config's media type.
    artifact_type = body.get("artifactType") or (body.get("config") or {}).get("mediaType")
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if body.get("annotations"):
        descriptor["annotations"] = body["annotations"]
    return subject["digest"], descriptor


def referrers_answer(found: list[dict], path: str, query: dict[str, str], *, page_size: int,
                     filters: bool = True) -> tuple[int, dict, bytes]:
    """(status, headers, body) of `GET <path>?<query>` listing `found`: the
    `artifactType` filter (said in `OCI-Filters-Applied`), `last` paging with Link."""
    headers = {"Content-Type": OCI_INDEX}
    wanted = query.get("artifactType")
    if wanted and filters:
        found = [d for d in found if d.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    start = int(query.get("last", "0"))
    page = found[start:start + page_size]
    if start + page_size < len(found):
        headers["Link"] = f'<{path}?{urlencode({**query, "last": str(start + page_size)})}>; rel="next"'
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page}).encode()
    return 200, headers, body
