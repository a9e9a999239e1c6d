"""Typed registry errors, mapped from the OCI error body and the HTTP status."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from ..errors import MirrorError
from .ratelimit import parse_rate_limit

# HTTP statuses that are worth another try (OCI distribution spec).
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# A query string after a URL or a path (presigned URLs carry X-Amz-Signature,
# access_token, verify=...): "?" right after a URL character, up to a space,
# a quote or a closing parenthesis.
_QUERY = re.compile(r"(?<=[\w/.~%-])\?[^\s'\"<>)]+")


def redact(text: str) -> str:
    """``text`` with every URL query string replaced by ``?…``."""
    return _QUERY.sub("?…", text)


class RegistryError(MirrorError):
    """A registry answered with an error (or did not answer at all).

    The message never holds a URL's query string: it is redacted here, where
    every registry error is made, whatever text it was built from."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "",
                 temporary: bool = False, retry_after: float | None = None):
        super().__init__(redact(message))
        self.status = status
        self.code = code
        self.temporary = temporary
        self.retry_after = retry_after


class Unauthorized(RegistryError):
    """401/403 after one token refresh: credentials are missing or wrong."""


class NotFound(RegistryError):
    """MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN, or a plain 404."""


class ManifestUnknown(NotFound):
    pass


class BlobUnknown(NotFound):
    pass


class RateLimited(RegistryError):
    """429 TOOMANYREQUESTS (temporary).

    `pull_limit` tells Docker Hub's pull rate limit (wait for the window: defer
    the image) from an abuse limit on other requests (back off and retry).
    """

    def __init__(self, message: str, *, pull_limit: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.pull_limit = pull_limit


class ServerError(RegistryError):
    """5xx or 408: the registry had a problem (temporary)."""


class ConnectionFailed(RegistryError):
    """No answer: DNS, refused connection, reset, timeout (temporary), a TLS failure (not).

    `unreachable`: the name did not resolve or the connection was refused; a
    retry policy tries those once more only (waiting rarely brings a registry up)."""

    def __init__(self, message: str, *, unreachable: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.unreachable = unreachable


class RedirectRefused(RegistryError):
    """A redirect to another scheme than http(s), or to an internal address (permanent)."""


class LimitExceeded(RegistryError):
    """An answer larger, or a listing longer, than ecr-mirror reads (permanent)."""


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _first_error(response: requests.Response) -> tuple[str, str]:
    try:
        body = json.loads(response.content or b"{}")
        first = (body.get("errors") or [{}])[0]
        return str(first.get("code") or ""), str(first.get("message") or "")
    except (ValueError, AttributeError, TypeError):
        return "", ""


def from_response(response: requests.Response, what: str) -> RegistryError:
    """Map an error response to a typed error naming `what` was asked for."""
    status = response.status_code
    code, message = _first_error(response)
    detail = f"{what}: HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429 or code == "TOOMANYREQUESTS":
        rate = parse_rate_limit(response.headers)
        pull_limit = "pull rate limit" in message or bool(rate and rate.remaining == 0)
        if retry_after is None and pull_limit and rate and rate.window_seconds:
            retry_after = float(rate.window_seconds)
        return RateLimited(detail, status=status, code=code or "TOOMANYREQUESTS",
                           temporary=True, retry_after=retry_after, pull_limit=pull_limit)
    if status in (401, 403) or code in ("UNAUTHORIZED", "DENIED"):
        return Unauthorized(detail + " (check the registry credentials)", status=status, code=code)
    if code == "NAME_UNKNOWN":
        return NotFound(detail + " (is the repository name right?)", status=status, code=code)
    if code == "MANIFEST_UNKNOWN" or (status == 404 and not code and "/manifests/" in response.url):
        return ManifestUnknown(detail, status=status, code=code or "MANIFEST_UNKNOWN")
    if code == "BLOB_UNKNOWN" or (status == 404 and not code and "/blobs/" in response.url):
        return BlobUnknown(detail, status=status, code=code or "BLOB_UNKNOWN")
    if status == 404:
        return NotFound(detail, status=status, code=code)
    if status in TEMPORARY_STATUSES:
        return ServerError(detail, status=status, code=code, temporary=True, retry_after=retry_after)
    return RegistryError(detail, status=status, code=code)
