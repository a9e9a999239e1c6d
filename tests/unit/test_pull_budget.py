"""The pull budget on its own, on a clock the test moves."""

import pytest

from ecr_mirror.registry.auth import Credentials
from ecr_mirror.registry.budget import DEFAULT_WAIT, PullBudget
from ecr_mirror.registry.errors import RateLimited
from ecr_mirror.stats import RateLimit

ALICE, BOB, CAROL = (Credentials(name, f"{name}-secret") for name in ("alice", "bob", "carol"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seen(remaining, limit=100, window=3600):
    return RateLimit(limit=limit, remaining=remaining, window_seconds=window)


def test_what_was_seen_is_forgotten_once_its_window_has_passed():
    clock = Clock()
    budget = PullBudget([ALICE], reserve=0, clock=clock)
    budget.observe(seen(0, window=600))
    with pytest.raises(RateLimited) as spent:
        budget.ensure("pull")
    assert spent.value.pull_limit and spent.value.retry_after == 600
    clock.now += 600  # still inside the window
    with pytest.raises(RateLimited):
        budget.ensure("pull")
    clock.now += 1
    assert budget.ensure("pull") is False  # the window reset: pull again, same principal
    assert budget.headroom() is None  # nothing is known any more


def test_the_reserve_is_kept():
    budget = PullBudget([ALICE], reserve=5, clock=Clock())
    budget.observe(seen(6))
    assert budget.ensure("pull") is False and budget.headroom() == 1
    budget.observe(seen(5))
    with pytest.raises(RateLimited) as spent:
        budget.ensure("pull")
    assert "5 kept in reserve" in str(spent.value)
    assert budget.headroom() == 0


def test_credentials_take_over_in_order_and_wrap_around():
    clock = Clock()
    budget = PullBudget([ALICE, BOB, CAROL], clock=clock)
    assert budget.current is ALICE
    budget.observe(seen(0))
    assert budget.ensure("pull") is True and budget.current is BOB
    budget.observe(seen(0, window=60))
    assert budget.ensure("pull") is True and budget.current is CAROL
    budget.observe(seen(0))
    with pytest.raises(RateLimited) as spent:
        budget.ensure("pull")
    assert spent.value.retry_after == 60  # the first window to reset
    clock.now += 61  # bob's window reset: the rotation wraps past alice to him
    assert budget.ensure("pull") is True and budget.current is BOB
    assert budget.principal == "bob"


def test_an_unseen_principal_is_assumed_to_have_the_limit_the_others_showed():
    budget = PullBudget([ALICE, BOB], reserve=10, clock=Clock())
    assert budget.headroom() is None
    budget.observe(seen(30, limit=200))
    assert budget.headroom() == (30 - 10) + (200 - 10)


def test_headroom_is_unknown_when_no_limit_was_shown():
    budget = PullBudget([ALICE, BOB], clock=Clock())
    budget.observe(RateLimit(limit=None, remaining=7, window_seconds=None))
    assert budget.headroom() is None


def test_a_429_without_headers_spends_the_principal_for_its_retry_after():
    clock = Clock()
    budget = PullBudget([ALICE], clock=clock)
    budget.exhausted(retry_after=120)
    with pytest.raises(RateLimited) as spent:
        budget.ensure("pull")
    assert spent.value.retry_after == 120
    assert budget.headroom() == 0
    clock.now += 121
    assert budget.ensure("pull") is False


def test_a_429_without_headers_nor_retry_after_waits_the_default():
    clock = Clock()
    budget = PullBudget([ALICE, BOB], clock=clock)
    budget.exhausted(retry_after=None)
    assert budget.ensure("pull") is True and budget.current is BOB
    assert budget.wait_seconds() == DEFAULT_WAIT
    clock.now += DEFAULT_WAIT + 1
    budget.exhausted(retry_after=None)  # bob too; alice's default window has passed
    assert budget.ensure("pull") is True and budget.current is ALICE


def test_a_429_keeps_the_limit_seen_before():
    budget = PullBudget([ALICE, BOB], clock=Clock())
    budget.observe(seen(40, limit=100, window=600))
    budget.exhausted(retry_after=30)
    assert budget.wait_seconds() == 600  # the window the headers told, not Retry-After
    assert budget.headroom() == 0 + 100  # alice spent, bob assumed to have alice's limit
