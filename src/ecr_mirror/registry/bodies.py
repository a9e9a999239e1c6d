"""Reading answers with a ceiling: a registry cannot make the client read without end.

Every answer that is read into memory (manifests, token answers, tag lists,
error bodies) goes through :func:`read_capped`: a ``Content-Length`` above the
limit is refused before any byte is read, and otherwise the body is read in
pieces and the connection closed as soon as the limit is passed, so memory
never follows what the server sends. Blobs are not read here: they are
streamed and verified (`BlobStream`).
"""

from __future__ import annotations

import requests
import urllib3

from .errors import ConnectionFailed, LimitExceeded

MiB = 1 << 20
#: ECR's own limit for a manifest.
MAX_MANIFEST_BYTES = 4 * MiB
#: A token answer is a small JSON document (Docker Hub's are about 2 KiB).
MAX_TOKEN_BYTES = 1 * MiB
#: Tag-list pages and other JSON answers.
MAX_JSON_BYTES = 16 * MiB
#: The body of an error answer (only its first error's code and message are used).
MAX_ERROR_BYTES = 1 * MiB

_PIECE = 64 * 1024


def size_text(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n} bytes"


def read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    """The body of ``response`` (opened with ``stream=True``), at most ``limit`` bytes.

    Raises `LimitExceeded` (and closes the connection) past the limit. The bytes
    are also left in ``response.content`` so `.json()` and error mapping work.
    """
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        response.close()
        raise LimitExceeded(f"{what}: the answer is {length} bytes, more than the "
                            f"{size_text(limit)} limit")
    body = bytearray()
    try:
        for piece in response.iter_content(_PIECE):
            body += piece
            if len(body) > limit:
                response.close()
                raise LimitExceeded(f"{what}: the answer is larger than the {size_text(limit)} limit")
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        response.close()
        raise ConnectionFailed(f"{what}: the answer was cut short: {type(exc).__name__}",
                               temporary=True) from exc
    response._content = bytes(body)
    response._content_consumed = True  # type: ignore[attr-defined]  # requests' private flag, not in its stubs
    return response._content
