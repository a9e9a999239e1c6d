"""Image references, parsed and normalised exactly as the docker CLI does.

This follows distribution/reference ``ParseNormalizedNamed`` + ``TagNameOnly``:

* ``nginx``                        -> ``docker.io/library/nginx:latest``
* ``bitnami/redis``                -> ``docker.io/bitnami/redis:latest``
* ``index.docker.io/x/y``          -> ``docker.io/x/y:latest``
* ``localhost:5000/a/b:t``         -> registry ``localhost:5000``, repository ``a/b``
* ``ghcr.io/o/r:t@sha256:<hex>``   -> tag and digest both kept; the digest is fetched

The first ``/``-separated component is a registry host when it is ``localhost``,
contains a ``.`` or ``:``, or has upper-case letters; otherwise the whole name is
a path on Docker Hub. Grammar (distribution/reference)::

    reference := [host[:port] "/"] path [":" tag] ["@" algorithm ":" hex]
    path      := component ("/" component)*, component := [a-z0-9]+ (sep [a-z0-9]+)*
    sep       := "." | "_" | "__" | "-"+        tag := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}

Deliberate difference from docker: a first component with ``.`` or ``:`` that is
not a valid host (``my_reg.io/x``) is rejected; docker keeps it as a host-less
path that no registry can serve.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from ecr_mirror.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_LEGACY_HUB = "index.docker.io"
_LIBRARY = "library/"
MAX_REPOSITORY_LENGTH = 255  # distribution/reference: the path, without the host

# Go's \w is ASCII-only, so the classes are spelled out (Python's \w is Unicode).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(rf"(?:({_HOST})/)?({_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?")
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")
# Algorithms the docker CLI links in (go-digest), with their hex lengths.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(UsageError, ValueError):
    """A string that is not a valid image reference; never worth retrying."""

    temporary = False

    def __init__(self, reference: str, reason: str):
        super().__init__(f"invalid image reference {quote(reference)}: {reason}")
        self.reference = reference
        self.reason = reason


def quote(text: str) -> str:
    """A user's string in a message: in double quotes, control characters escaped."""
    return json.dumps(text, ensure_ascii=False)  # "nginx"; escapes \n and \t


def _digest_problem(digest: str) -> str | None:
    algorithm, colon, hexpart = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        if colon and re.fullmatch(_DIGEST, digest):
            return (f"unsupported digest algorithm {quote(algorithm)}; "
                    "use sha256: followed by 64 lowercase hex characters")
        algorithm, length = "sha256", 64
    elif re.fullmatch(rf"[a-f0-9]{{{length}}}", hexpart):
        return None
    return f"the digest must be {algorithm}: followed by {length} lowercase hex characters"


def _tag_problem(tag: str) -> str | None:
    if re.fullmatch(_TAG, tag):
        return None
    if len(tag) > 128:
        return f"the tag is {len(tag)} characters long; tags are at most 128"
    return (f"the tag {quote(tag)} is invalid: use letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def api_host(self) -> str:
        """The host that serves ``/v2/`` for this registry."""
        return DOCKER_HUB_API if self.is_docker_hub else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What goes in ``/v2/<repository>/manifests/<ref>``: the digest wins."""
        if self.digest or self.tag:
            return self.digest or self.tag  # type: ignore[return-value]
        raise InvalidReference(str(self), "neither a tag nor a digest; add one, e.g. \":latest\"")

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short form docker prints: ``nginx:stable``, ``bitnami/redis:latest``."""
        if not self.is_docker_hub:
            return str(self)
        path = self.repository
        if path.startswith(_LIBRARY) and "/" not in path[len(_LIBRARY):]:
            path = path[len(_LIBRARY):]
        return path + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        problem = _tag_problem(tag)
        if problem:
            raise InvalidReference(f"{self.name}:{tag}", problem)
        # dataclasses.replace(self, tag=tag), without its cost (once per tag planned or loaded)
        return Reference(self.registry, self.repository, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        problem = _digest_problem(digest)
        if problem:
            raise InvalidReference(f"{self.name}@{digest}", problem)
        return replace(self, digest=digest)


def is_registry_host(text: object) -> bool:
    """`docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`: a host as references name it."""
    return isinstance(text, str) and re.fullmatch(_HOST, text) is not None


def _split_host(text: str) -> tuple[str, str, int]:
    """(registry, remainder, offset of the remainder in text), like splitDockerDomain."""
    first, slash, rest = text.partition("/")
    if not slash:
        return DOCKER_HUB, _LIBRARY + text, 0
    if first == "localhost" or "." in first or ":" in first or first != first.lower():
        host, remainder, offset = (DOCKER_HUB if first == _LEGACY_HUB else first), rest, len(first) + 1
    else:
        host, remainder, offset = DOCKER_HUB, text, 0
    if host == DOCKER_HUB and "/" not in remainder:
        remainder = _LIBRARY + remainder
    return host, remainder, offset


def _diagnose(host: str, remainder: str) -> str:
    """Why ``host/remainder`` does not match the grammar (first problem, left to right)."""
    if not re.fullmatch(_HOST, host):
        return (f"{quote(host)} is not a valid registry host (letters, digits, '-' and '.', "
                "or an [IPv6] address, then an optional :port of digits)")
    name, at, digest = remainder.partition("@")
    path, colon, tag = name.partition(":")
    components = path.split("/")
    if "" in components:
        return "empty path component (a leading, trailing or double '/'); remove the extra '/'"
    for component in components:
        if not re.fullmatch(_COMPONENT, component):
            return (f"path component {quote(component)} is invalid: use lowercase letters and "
                    "digits, separated by '.', '_', '__' or '-'")
    if colon and not tag:
        return "there is no tag after the ':'; add one (e.g. \"nginx:stable\") or remove the ':'"
    if colon and (problem := _tag_problem(tag)):
        return problem
    if at and not digest:
        return "there is no digest after the '@'; add sha256:<64 hex> or remove the '@'"
    return (_digest_problem(digest) if at else None) or "invalid reference format"


def parse(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse ``text`` as the docker CLI would; add ``default_tag`` when neither
    a tag nor a digest is given (``None`` leaves the reference untagged)."""
    if not text:
        raise InvalidReference(text, 'empty; give a name like "nginx:stable"')
    if any(ch.isspace() for ch in text):
        raise InvalidReference(text, "contains whitespace; remove spaces, tabs and newlines")
    if _IMAGE_ID_RE.fullmatch(text):
        raise InvalidReference(text, "cannot specify 64-byte hexadecimal strings (that is an "
                                     "image ID); give a name, e.g. \"nginx@sha256:<hex>\"")
    host, remainder, offset = _split_host(text)
    remote = remainder.partition(":")[0]
    if remote != remote.lower():
        head, tail = text[:offset], text[offset:]
        if "." not in head and ":" not in head:
            head = head.lower()  # "Foo/Bar": the upper-case first part was meant as a path
        cut = tail.find(":") if ":" in tail else len(tail)
        suggestion = head + tail[:cut].lower() + tail[cut:]
        raise InvalidReference(text, f"repository names must be lowercase (try {quote(suggestion)})")
    match = _REFERENCE_RE.fullmatch(f"{host}/{remainder}")
    if not match or match.group(1) != host:
        raise InvalidReference(text, _diagnose(host, remainder))
    _, repository, tag, digest = match.groups()
    if len(repository) > MAX_REPOSITORY_LENGTH:
        raise InvalidReference(text, f"the repository name is {len(repository)} characters long; "
                                     f"the limit is {MAX_REPOSITORY_LENGTH}")
    if digest and (problem := _digest_problem(digest)):
        raise InvalidReference(text, problem)
    if not tag and not digest:
        tag = default_tag or None
    return Reference(host, repository, tag or None, digest)
