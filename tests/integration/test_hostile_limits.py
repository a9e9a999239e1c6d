"""A registry cannot make the copier read without end (issue 9, finding 7).

Each oversized answer gives a typed, permanent error naming the registry and the
limit, and the client hangs up instead of reading the rest: the server sees its
body cut short (``HostileServer.cut``). Peak memory is not asserted here; the
report of issue 9 has the numbers measured by hand.
"""

from __future__ import annotations

import pytest

from ecr_mirror.registry.errors import LimitExceeded
from ecr_mirror_testing.hostile import (  # noqa: F401
    answer,
    challenge,
    client,
    client_for,
    endless_tags,
    fake_dns,
    local_ca,
    stream,
    tls,
)

pytestmark = pytest.mark.integration

MiB = 1 << 20
HUGE = 300 * MiB


def assert_refused(caught, limit: str) -> None:
    assert ("registry.test" in str(caught.value) or "localhost" in str(caught.value))
    assert limit in str(caught.value)
    assert caught.value.temporary is False


@pytest.mark.parametrize("content_length", [True, False])
def test_a_300_mib_manifest_is_refused_without_reading_it(tls, client, content_length):
    tls.route("GET", r"/v2/app/manifests/1", stream(HUGE, content_length=content_length))
    with pytest.raises(LimitExceeded) as caught:
        client.get_manifest("app", "1")
    assert_refused(caught, "4 MiB")
    assert len(tls.seen(path="/manifests/")) == 1  # not retried
    tls.wait_streams()
    assert [path for path, _ in tls.cut] == ["/v2/app/manifests/1"]


def test_an_oversized_token_answer_is_refused(tls, local_ca):
    tls.route("GET", r"/v2/app/manifests/1", challenge(tls.url("auth.test", "/token")))
    tls.route("GET", "/token", stream(HUGE, content_length=False), host="auth.test")
    with pytest.raises(LimitExceeded) as caught:
        client_for(tls, local_ca.pem, "localhost").get_manifest("app", "1")
    assert_refused(caught, "token")
    tls.wait_streams()
    assert len(tls.cut) == 1


@pytest.mark.parametrize("status", [200, 404, 503])
def test_an_oversized_tag_list_or_error_body_is_refused(tls, client, status):
    tls.route("GET", r"/v2/app/tags/list", stream(HUGE, status=status, content_length=False))
    with pytest.raises(LimitExceeded) as caught:
        client.list_tags("app")
    assert_refused(caught, "MiB")
    tls.wait_streams()
    assert len(tls.seen(path="/tags/list")) == 1 and len(tls.cut) == 1


def test_endless_tag_pages_stop_at_the_page_limit(tls, client):
    tls.route("GET", r"/v2/(.+)/tags/list", endless_tags(stop_after=5000))
    with pytest.raises(LimitExceeded) as caught:
        client.list_tags("app")
    assert_refused(caught, "pages")
    assert len(tls.seen(path="/tags/list")) < 5000


@pytest.mark.parametrize("kind", [dict(same_next=True), dict(new_tags=False)])
def test_tag_pages_that_repeat_are_refused_at_once(tls, client, kind):
    tls.route("GET", r"/v2/(.+)/tags/list", endless_tags(stop_after=5000, **kind))
    with pytest.raises(LimitExceeded) as caught:
        client.list_tags("app")
    assert_refused(caught, "repeat")
    assert len(tls.seen(path="/tags/list")) <= 3


def test_tag_paging_stops_when_its_time_is_up(tls, client):
    tls.route("GET", r"/v2/(.+)/tags/list", endless_tags(stop_after=5000))
    with pytest.raises(LimitExceeded) as caught:
        client.list_tags("app", max_seconds=0.0)
    assert_refused(caught, "0 s")
    assert len(tls.seen(path="/tags/list")) == 1
