"""The pull budget of one registry, across one or more credentials.

Docker Hub counts manifest GETs per principal (an account, or the anonymous
caller's IP) and says in every manifest answer, HEAD included, how many are
left. Before each counted pull we check the current principal still has more
than `reserve` left; when it has not, or a 429 TOOMANYREQUESTS arrives, the
next credential takes over, and when every one is spent the pull is refused
with `RateLimited` carrying the time to wait (so the image is deferred, not
failed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ..stats import RateLimit
from .auth import Credentials
from .errors import RateLimited

DEFAULT_WAIT = 3600.0  # seconds to defer when the registry gives no window


class PullBudget:
    def __init__(self, credentials: Sequence[Credentials] = (), reserve: int = 0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # No credentials means one anonymous principal.
        self._principals: list[Credentials | None] = list(credentials) or [None]
        self.reserve = reserve
        self._index = 0
        self._seen: dict[int, tuple[float, RateLimit]] = {}  # index -> (when, what)
        self._lock = threading.Lock()
        self._clock = clock  # seconds, only ever compared with itself

    @property
    def current(self) -> Credentials | None:
        return self._principals[self._index]

    @property
    def principal(self) -> str:
        """A name for the current principal that is safe to log (never a secret)."""
        current = self.current
        return current.username if current else "anonymous"

    def observe(self, rate: RateLimit) -> None:
        with self._lock:
            self._seen[self._index] = (self._clock(), rate)

    def _rate(self, index: int) -> RateLimit | None:
        """What was seen for a principal, forgotten once its window has passed."""
        seen = self._seen.get(index)
        if seen is None:
            return None
        when, rate = seen
        if self._clock() - when > (rate.window_seconds or DEFAULT_WAIT):
            del self._seen[index]
            return None
        return rate

    def _spent(self, index: int) -> bool:
        rate = self._rate(index)
        return rate is not None and rate.remaining is not None and rate.remaining <= self.reserve

    def _wait(self) -> float:
        windows = [r.window_seconds for _, r in self._seen.values() if r.window_seconds]
        return float(min(windows)) if windows else DEFAULT_WAIT

    def ensure(self, what: str) -> bool:
        """Make sure the current principal may pull; True if it changed.

        Raises `RateLimited` when no principal has more than `reserve` left.
        """
        with self._lock:
            if not self._spent(self._index):
                return False
            for step in range(1, len(self._principals)):
                candidate = (self._index + step) % len(self._principals)
                if not self._spent(candidate):
                    self._index = candidate
                    return True
            remaining = [self._seen[i][1].remaining for i in sorted(self._seen)]
            raise RateLimited(
                f"{what}: pull budget spent: remaining {remaining} with {self.reserve} kept in "
                f"reserve, for all {len(self._principals)} credential(s); deferred until the "
                "window resets", code="TOOMANYREQUESTS", temporary=True, retry_after=self._wait(),
                pull_limit=True)

    def exhausted(self, retry_after: float | None) -> None:
        """A 429 pull-limit answer: the current principal has nothing left."""
        with self._lock:
            old = self._rate(self._index)
            window = old.window_seconds if old else (int(retry_after) if retry_after else None)
            self._seen[self._index] = (self._clock(), RateLimit(
                limit=old.limit if old else None, remaining=0, window_seconds=window))

    def headroom(self) -> int | None:
        """Pulls that may still be spent above the reserve, over all principals.

        A principal not seen yet is assumed to have the limit the others showed
        (accounts of one kind share a limit); None when nothing is known.
        """
        with self._lock:
            rates = {i: r for i in range(len(self._principals)) if (r := self._rate(i))}
            if not rates:
                return None
            limits = [r.limit for r in rates.values() if r.limit is not None]
            assumed = max(limits) if limits else None
            total = 0
            for i in range(len(self._principals)):
                rate = rates.get(i)
                left = rate.remaining if rate and rate.remaining is not None else assumed
                if left is None:
                    return None
                total += max(0, left - self.reserve)
            return total

    def wait_seconds(self) -> float:
        with self._lock:
            return self._wait()
