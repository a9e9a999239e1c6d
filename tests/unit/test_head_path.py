"""The HEAD path's shortcuts give what the long way gave: `Request.but` as
`dataclasses.replace`, a header block written once per header set, an answer's
header lines read at once as line by line, the session's headers as iterated,
rate-limit headers read from requests' headers as from a plain dict."""

from __future__ import annotations

import dataclasses
import http.client
import io
from urllib.parse import urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from ecr_mirror.registry import headwire, sender
from ecr_mirror.registry.leanhead import split_plain
from ecr_mirror.registry.ratelimit import parse_rate_limit
from ecr_mirror.registry.sender import Request, origin

REQUEST = Request("HEAD", "https://registry.test/v2/app/manifests/1", kind="manifest_head", what="app:1",
                  headers={"Accept": "x"}, scope="repository:app:pull")


@pytest.mark.parametrize("changes", [
    {}, {"auth": "Bearer t"}, {"headers": {"A": "b"}, "hop": 2},
    {"url": "https://cdn.test/x", "params": None, "method": "GET"},
])
def test_but_is_replace(changes):
    copy = REQUEST.but(**changes)
    assert copy == dataclasses.replace(REQUEST, **changes) and type(copy) is Request
    assert copy is not REQUEST and REQUEST.auth is None and REQUEST.hop == 0  # the original unchanged


def test_but_refuses_a_field_request_has_not():
    with pytest.raises(TypeError, match="no field colour"):
        REQUEST.but(colour="red")


def test_origin_is_scheme_and_lowercase_host_every_time():
    for _ in range(2):
        assert origin("HTTPS://Registry.Test:5000/v2/?a=B") == ("https", "registry.test:5000")
        assert origin("http://[::1]:80/v2/") == ("http", "[::1]:80")


def test_the_session_headers_are_read_as_iterated_and_changes_seen():
    headers = CaseInsensitiveDict({"User-Agent": "a", "accept": "b"})
    assert list(sender._pairs(headers)) == list(headers.items())
    headers["ACCEPT"] = "c"
    assert list(sender._pairs(headers)) == [("User-Agent", "a"), ("ACCEPT", "c")]
    assert list(sender._pairs({"X": "y"})) == [("X", "y")]


def test_a_header_block_is_written_per_header_set():
    one = headwire.request_bytes("/v2/a/manifests/1", "registry.test", {"Authorization": "Bearer one"})
    two = headwire.request_bytes("/v2/a/manifests/2", "registry.test", {"Authorization": "Bearer two"})
    assert one == (b"HEAD /v2/a/manifests/1 HTTP/1.1\r\nHost: registry.test\r\n"
                   b"Accept-Encoding: identity\r\nAuthorization: Bearer one\r\n\r\n")
    assert two.startswith(b"HEAD /v2/a/manifests/2 ") and two.endswith(b"Authorization: Bearer two\r\n\r\n")
    with pytest.raises(http.client.InvalidURL):
        headwire.request_bytes("/v2/a b", "registry.test", {})


def test_a_refused_header_is_refused_every_time():
    for _ in range(2):  # never remembered as written
        with pytest.raises(ValueError, match="Invalid header value"):
            headwire.request_bytes("/v2/", "registry.test", {"Authorization": "Bearer x\r\nEvil: 1"})


DIGEST = "sha256:" + "a" * 64
ANSWERS = [
    f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\nContent-Length:  7 \t\r\n"
    "Content-Type: application/json\r\nX-Empty:\r\nX-Inner: a \t b\r\n\r\ngarbage",
    "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nA: 1\nB: 2\r\n\r\n",  # a bare line feed ends a line
    "HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n",  # a bare CR inside a value
    "HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
    "HTTP/1.1 200 OK\r\nA: 1 \r\r\n\r\n",
    "HTTP/1.1 200 OK\r\nA: caf\xe9\r\n\r\n",
    "HTTP/1.1 200 OK\r\n" + "X: 1\r\n" * 100 + "\r\n",
    "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
]


def _line_by_line(monkeypatch):
    monkeypatch.setattr(headwire, "_plain_block", lambda stream: None)
    monkeypatch.setattr(headwire, "_PLAIN_LINE", lambda text: None)


def _read(answer: str, size: int = 8192) -> tuple[tuple, bytes]:
    stream = io.BufferedReader(io.BytesIO(answer.encode("latin-1")), size)
    got = headwire.read_answer(stream)
    return (got.status, got.reason, got.headers, got.will_close), stream.read()


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("size", [8192, 40])  # the whole answer buffered, or a piece of it
def test_header_lines_read_at_once_as_line_by_line(monkeypatch, answer, size):
    quick = _read(answer, size)
    _line_by_line(monkeypatch)
    assert quick == _read(answer, size)


@pytest.mark.parametrize("answer", [
    "HTTP/1.1 200 OK\r\n" + "X: 1\r\n" * 101 + "\r\n",
    "HTTP/1.1 200 OK\r\nbad line\r\n\r\n",
])
def test_what_is_refused_line_by_line_is_refused_at_once(monkeypatch, answer):
    with pytest.raises(http.client.HTTPException) as quick:
        _read(answer)
    _line_by_line(monkeypatch)
    with pytest.raises(http.client.HTTPException) as slow:
        _read(answer)
    assert str(quick.value) == str(slow.value)


@pytest.mark.parametrize("headers", [
    {"RateLimit-Limit": "100;w=21600", "ratelimit-remaining": "76;w=21600", "Docker-RateLimit-Source": "1.2.3.4"},
    {"X-RateLimit-Limit": "100", "x-ratelimit-remaining": "0;w=3600"},
    {"Content-Type": "x"},
])
def test_rate_limits_read_from_requests_headers_as_from_a_dict(headers):
    assert parse_rate_limit(CaseInsensitiveDict(headers)) == parse_rate_limit(dict(headers))


@pytest.mark.parametrize("url", [
    "https://registry-1.docker.io/v2/library/nginx/manifests/1.27",
    "http://127.0.0.1:5000/v2/a/b/manifests/sha256:" + "a" * 64,
    "https://Registry.Test:443/v2/", "https://registry.test", "http://h/a;b=c/%41~",
])
def test_a_plain_url_is_split_as_urlsplit_splits_it(url):
    parts = urlsplit(url)
    assert (parts.query, parts.fragment) == ("", "")
    assert split_plain(url) == (parts.scheme, parts.netloc, parts.path)


@pytest.mark.parametrize("url", [
    "https://registry.test/v2/?n=1", "https://registry.test/v2/#x", "https://user:pw@registry.test/",
    "https://[::1]:5000/v2/", "HTTPS://registry.test/", " https://registry.test/", "https://registry.test/a b",
    "https://registry.test/a\tb", "https://régistry.test/", "ftp://registry.test/", "https://registry.test\\x/",
])
def test_another_url_is_left_to_urlsplit(url):
    assert split_plain(url) is None
    assert origin(url) == (urlsplit(url).scheme, urlsplit(url).netloc.lower())
