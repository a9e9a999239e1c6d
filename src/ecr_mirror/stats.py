"""Request accounting shared by the source client and the ECR target.

Every request ecr-mirror sends is counted under a kind. At the source the
kinds say what a registry charges for: a `manifest_get` is the pull that
Docker Hub counts; `manifest_head`, `blob_get`, `token` and `tag_list` are not.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """A registry's pull budget as its last response told it."""

    limit: int | None
    remaining: int | None
    window_seconds: int | None
    source: str | None = None

    def as_dict(self) -> dict:
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "windowSeconds": self.window_seconds,
        }


class RequestStats:
    """Thread-safe counters of requests by kind, plus the last rate limit seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.rate_limit: RateLimit | None = None

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def saw_rate_limit(self, rate_limit: RateLimit) -> None:
        with self._lock:
            self.rate_limit = rate_limit

    def get(self, kind: str) -> int:
        with self._lock:
            return self._counts[kind]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))
