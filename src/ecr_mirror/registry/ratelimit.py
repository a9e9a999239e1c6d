"""Docker Hub's rate-limit headers, in both spellings.

`ratelimit-limit: 100;w=21600` and `x-ratelimit-remaining: 76;w=3600` are the
same thing; no header means no limit. The numbers are read, never assumed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from requests.structures import CaseInsensitiveDict

from ..stats import RateLimit

_VALUE = re.compile(r"^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?")


def _header(lowered: Mapping[str, str], name: str) -> str | None:
    return lowered.get(name) or lowered.get("x-" + name)


def _parse(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    m = _VALUE.match(value)
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    # Lowercased once per answer: requests' headers hold their lowercase names already.
    lowered = dict(headers.lower_items()) if isinstance(headers, CaseInsensitiveDict) else \
        {k.lower(): v for k, v in headers.items()}
    limit, w1 = _parse(_header(lowered, "ratelimit-limit"))
    remaining, w2 = _parse(_header(lowered, "ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    source = _header(lowered, "docker-ratelimit-source")
    return RateLimit(limit=limit, remaining=remaining, window_seconds=w2 or w1, source=source)
