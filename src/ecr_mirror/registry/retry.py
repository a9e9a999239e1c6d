"""The retry layer: temporary failures are retried with tenacity.

`Retry-After` is honoured when it is short; a longer one, or a spent pull budget,
is raised instead, so the caller defers the whole image. A copy's deadline (if
any) is consulted before each sleep: a wait that would run past it raises
`Deferred` instead (`deadline.bounded_wait`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from ..deadline import bounded_wait
from ..deadline import sleep as deadline_sleep

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How temporary failures are retried (tenacity does the work)."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 20.0
    #: A `Retry-After` longer than this is not slept through: the error is
    #: raised so the caller can defer the whole image instead.
    max_retry_after: float = 60.0
    #: Tries of a registry that is unreachable (a name that does not resolve,
    #: a refused connection): one more, not `attempts`, so a mistyped host fails fast.
    unreachable_attempts: int = 2

    def retrying(self) -> tenacity.Retrying:
        backoff = tenacity.wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait,
                                                   jitter=self.initial_wait)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None)
            return float(after) if after is not None else backoff(state)

        def retry_it(exc: BaseException) -> bool:
            if not getattr(exc, "temporary", False) or getattr(exc, "pull_limit", False):
                return False  # a spent pull budget is waited out by deferring, not here
            after = getattr(exc, "retry_after", None)
            return after is None or after <= self.max_retry_after

        unreachable_attempts = self.unreachable_attempts

        class stop_unreachable(tenacity.stop.stop_base):  # lower case, as tenacity names its stops
            """An unreachable host (DNS, refused) is tried `unreachable_attempts` times only."""

            def __call__(self, state: tenacity.RetryCallState) -> bool:
                exc = state.outcome.exception() if state.outcome else None
                return bool(getattr(exc, "unreachable", False)
                            and state.attempt_number >= unreachable_attempts)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(retry_it),
            stop=tenacity.stop_after_attempt(self.attempts) | stop_unreachable(),
            # A copy's deadline (if any) is consulted before each sleep: a wait
            # that would run past it raises `Deferred` instead.
            wait=bounded_wait(wait),
            sleep=deadline_sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        """One INFO line per retry: its cause, its number and its wait (`extra`:
        attempt, error, wait: what the CLI's announcement of long waits reads)."""
        error = str(state.outcome.exception()) if state.outcome else ""
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("retrying: %s; try %d of %d in %.1f s", error, state.attempt_number + 1,
                 self.attempts, wait,
                 extra={"attempt": state.attempt_number, "error": error, "wait": wait})

    def call(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, tried again on a temporary error as this policy says.

        The first try runs outside tenacity (most succeed, and tenacity's
        bookkeeping cost more than the layers' own work); a failed one is handed
        to tenacity as its first outcome, so what follows (the retries, their
        waits and numbers, the logs) is as if tenacity had run it. The retrying is
        built once per policy and copied per call (a copy has its own state, so
        calls may nest and run in many threads)."""
        try:
            return attempt()
        except Exception as exc:  # any error is tenacity's to judge, as before
            failed: list[BaseException] = [exc]

        def again() -> T:
            if failed:
                raise failed.pop()
            return attempt()

        return _template(self).copy()(again)


@functools.lru_cache(maxsize=16)
def _template(policy: RetryPolicy) -> tenacity.Retrying:
    return policy.retrying()
