"""How long one copy may still run, and the waits that must not outlast it.

A Lambda worker has a hard timeout. A copy stops `margin` seconds before it,
with `Deferred` (nothing tagged, the image handed back), and no retry wait,
`Retry-After` or lease poll may sleep past that point: the copy defers instead.

The deadline belongs to one copy, not to the clients it shares with other
copies, so it travels in a context variable: the engine sets it for the copy
and hands it explicitly to the threads it starts (`propagate`), and the
registry transport's retries look it up before each sleep (`allow_wait`,
`sleep`). Without a deadline (the CLI) nothing changes.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import Deferred

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "ecr_mirror_deadline", default=None)


@dataclass(frozen=True)
class Deadline:
    #: Seconds left before the hard stop (a Lambda's remaining time).
    time_left: Callable[[], float]
    #: Stop this many seconds before it (room to hand the image back).
    margin: float  # settings.MirrorSettings.stop_margin
    #: How a wait is spent (a test passes a fake clock's advance).
    sleeper: Callable[[float], None] = field(default=time.sleep, compare=False)

    def usable(self) -> float:
        """Seconds left to work in, margin deducted (negative when past it)."""
        return self.time_left() - self.margin

    def check(self, subject: str, doing: str) -> None:
        """Raise `Deferred` when the margin is reached, before `doing`."""
        left = self.time_left()
        if left < self.margin:
            raise Deferred(f"{subject}: {left:.0f}s left, less than the {self.margin:.0f}s margin, "
                           f"before {doing}; nothing was tagged, the image is handed back")

    def allow_wait(self, seconds: float, why: BaseException | str) -> None:
        """Raise `Deferred` (from `why`) when waiting `seconds` would cross the margin."""
        usable = self.usable()
        if seconds > usable:
            raise Deferred(f"{why}; waiting {seconds:.0f}s more would pass the deadline "
                           f"({max(usable, 0):.0f}s usable before the {self.margin:.0f}s margin), "
                           "so nothing was tagged and the image is handed back") from (
                why if isinstance(why, BaseException) else None)

    @contextmanager
    def applied(self) -> Iterator[Deadline]:
        """The current deadline inside the block (for this thread's context)."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


def current() -> Deadline | None:
    return _current.get()


def allow_wait(seconds: float, why: BaseException | str) -> float:
    """`seconds`, if the current deadline (if any) lets this wait happen; else `Deferred`."""
    deadline = _current.get()
    if deadline is not None:
        deadline.allow_wait(seconds, why)
    return seconds


def bounded_wait(wait: Callable[[Any], float]) -> Callable[[Any], float]:
    """A tenacity `wait` that raises `Deferred` (from the failed attempt's error)
    instead of returning a wait the current deadline cannot afford."""
    def bounded(state: Any) -> float:
        seconds = wait(state)
        error = state.outcome.exception() if state.outcome is not None else None
        return allow_wait(seconds, error or "retrying")
    return bounded


def sleep(seconds: float) -> None:
    """Sleep through the current deadline's sleeper (time.sleep without one)."""
    deadline = _current.get()
    (deadline.sleeper if deadline is not None else time.sleep)(seconds)


def propagate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` bound to the caller's context: for a pool or a thread, so the
    deadline (and any other context) goes with the work."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(fn, *args, **kwargs)
