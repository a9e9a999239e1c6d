"""The retry policy of the tests: real retries (three attempts), waits of milliseconds."""

from __future__ import annotations

from ecr_mirror.registry import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, max_retry_after=1)
