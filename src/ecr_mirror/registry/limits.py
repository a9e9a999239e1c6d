"""The rate-limit layers: reading the registry's limits, spending the pull budget.

`RateReader` reads the rate-limit headers (`ratelimit.parse_rate_limit`) off the
registry's answers; `PullGate` spends the pull budget (`budget.PullBudget`) and
switches credentials on a pull-limit 429.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from ..stats import RequestStats
from .budget import PullBudget
from .errors import RateLimited
from .ratelimit import parse_rate_limit
from .sender import Layer, Request, error_of, origin

#: The one kind of request Docker Hub counts as a pull.
PULL = "manifest_get"


class RateReader:
    """The layer that reads every answer from the registry's own origin (not a
    CDN's, not a token server's) for its rate-limit headers: counted in the
    stats, and told to the pull budget."""

    def __init__(self, inner: Layer, *, home: Callable[[], str], stats: RequestStats,
                 budget: PullBudget) -> None:
        self.inner = inner
        self._home = home
        self.stats = stats
        self.budget = budget

    def send(self, request: Request) -> requests.Response:
        response = self.inner.send(request)
        if request.kind != "token" and origin(request.url) == origin(self._home()):
            rate = parse_rate_limit(response.headers)
            if rate is not None:
                self.stats.saw_rate_limit(rate)
                self.budget.observe(rate)
        return response


class PullGate:
    """The layer that spends the pull budget: a counted pull (a manifest GET)
    goes out only while the current principal has more than the reserve left,
    and a pull-limit 429 hands over to the next credential (the request is
    sent again as it); when none is left, `RateLimited` with the time to wait."""

    def __init__(self, inner: Layer, budget: PullBudget) -> None:
        self.inner = inner
        self.budget = budget

    def send(self, request: Request) -> requests.Response:
        if request.kind != PULL:
            return self.inner.send(request)
        while True:
            self.budget.ensure(request.what)
            response = self.inner.send(request)
            if response.status_code != 429:
                return response
            error = error_of(response, request.what)
            if not isinstance(error, RateLimited) or not error.pull_limit:
                raise error
            self.budget.exhausted(error.retry_after)
            try:
                if not self.budget.ensure(request.what):
                    raise error
            except RateLimited:
                raise error from None  # the registry's own words and Retry-After
