"""One HEAD on the wire: its request written and its answer read, without `http.client`.

`http.client` parses every answer's headers with the `email` package, a third of
a warm plan's CPU. A HEAD's answer is a status line and header lines, no body;
this reads them with the same bounds as `http.client` (a line of at most 65,536
bytes, at most 100 headers, at most 100 interim 1xx answers) and refuses the
rest (an answer that is not HTTP/1.x, a status that is not three digits, a
header line without a colon) with `http.client`'s own exceptions, which
`leanhead` turns into a failed connection. The request is checked as
`http.client` checks it: no control character or space in the path, no line
break in a header's name or value.
"""

from __future__ import annotations

import functools
import http.client
import re
from typing import BinaryIO

MAX_LINE = 65536  # http.client's _MAXLINE
MAX_HEADERS = 100  # http.client's _MAXHEADERS
_ILLEGAL_PATH = re.compile("[\x00-\x20\x7f]")  # http.client's _contains_disallowed_url_pchar_re
_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch  # http.client's _is_legal_header_name
_FIELD_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # a field name's characters (RFC 9110's token)
_TOKEN = re.compile(_FIELD_NAME).fullmatch
#: `name: value` ending in a line break, with no other CR or LF: its name a token and its
#: value stripped of spaces and tabs, as the general reading below would read it.
_PLAIN_LINE = re.compile(rf"({_FIELD_NAME}):[ \t]*([^\r\n]*?)[ \t]*\r?\n").fullmatch
_PLAIN_BLOCK = re.compile(rf"(?:{_FIELD_NAME}:[^\r\n]*\r\n)+").fullmatch
_PLAIN_PAIR = re.compile(rf"({_FIELD_NAME}):[ \t]*([^\r\n]*?)[ \t]*\r\n").findall
_ILLEGAL_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search  # and _is_illegal_header_value


def request_bytes(path: str, host: str, headers: dict[str, str | bytes]) -> bytes:
    """`HEAD path HTTP/1.1` with `Host` and `Accept-Encoding: identity` first unless
    given, as `http.client` writes them; a str value is sent in latin-1, as there."""
    if _ILLEGAL_PATH.search(path):
        raise http.client.InvalidURL(f"URL can't contain control characters: {path!r}")
    return b"HEAD " + path.encode("ascii") + b" HTTP/1.1\r\n" + header_block(host, tuple(headers.items()))


@functools.lru_cache(maxsize=256)
def header_block(host: str, headers: tuple[tuple[str, str | bytes], ...]) -> bytes:
    """The request's header lines and the blank line after them: the same for every
    HEAD of a registry with the same headers (a token lasts minutes), so written and
    checked once per set, not per HEAD (a set refused is refused every time)."""
    lines = []
    given = {name.lower() for name, _ in headers}
    if "host" not in given:
        lines.append(b"Host: " + _host_bytes(host))
    if "accept-encoding" not in given:
        lines.append(b"Accept-Encoding: identity")
    for name, value in headers:
        raw_name = name.encode("ascii")
        raw_value = value.encode("latin-1") if isinstance(value, str) else value
        if not _LEGAL_NAME(raw_name):
            raise ValueError(f"Invalid header name {raw_name!r}")
        if _ILLEGAL_VALUE(raw_value):  # the value is not shown: it may be a credential
            raise ValueError(f"Invalid header value for {raw_name.decode('ascii', 'replace')}")
        lines.append(raw_name + b": " + raw_value)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def _host_bytes(host: str) -> bytes:
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:  # as http.client: a name beyond ASCII in its IDNA form
        return host.encode("idna")


class Answer:
    """What `leanhead` needs of an answer: status, reason, headers in order, and
    whether the server will close the connection after it."""

    __slots__ = ("headers", "reason", "status", "will_close")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]],
                 will_close: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.will_close = will_close


def read_answer(stream: BinaryIO) -> Answer:
    """The answer to a HEAD, read from `stream` up to the blank line ending its headers."""
    for _ in range(MAX_HEADERS + 1):
        version, status, reason = _status_line(stream)
        headers = _headers(stream)
        if not 100 <= status < 200 or status == 101:
            return Answer(status, reason, headers, _will_close(version, headers))
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} interim answers")


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise http.client.HTTPException(f"an answer line longer than {MAX_LINE} bytes")
    return line


def _status_line(stream: BinaryIO) -> tuple[str, int, str]:
    line = _line(stream)
    if not line:
        raise http.client.RemoteDisconnected("the connection was closed without an answer")
    text = line.decode("iso-8859-1").rstrip("\r\n")
    version, _, rest = text.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit() \
            or not code.isascii():
        raise http.client.BadStatusLine(f"not an HTTP/1.x answer: {text.rstrip()[:200]!r}")
    return version, int(code), reason.strip()


def _headers(stream: BinaryIO) -> list[tuple[str, str]]:
    block = _plain_block(stream)
    if block is not None:
        return block
    headers: list[tuple[str, str]] = []
    while True:
        line = _line(stream)
        if line in (b"\r\n", b"\n", b""):
            return headers
        if len(headers) >= MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        text = line.decode("iso-8859-1")
        plain = _PLAIN_LINE(text)
        if plain:  # the usual line, read at once: what the lines below make of it
            headers.append((plain[1], plain[2]))
            continue
        text = text.rstrip("\r\n")
        if text[:1] in (" ", "\t"):  # an obsolete folded line: part of the header before
            if not headers:
                raise http.client.HTTPException("a header answer starts with a folded line")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {text.strip()}".strip())
            continue
        name, colon, value = text.partition(":")
        if not colon or not _TOKEN(name):
            raise http.client.HTTPException(f"a malformed header line: {text[:200]!r}")
        headers.append((name, value.strip(" \t")))


def _plain_block(stream: BinaryIO) -> list[tuple[str, str]] | None:
    """The usual header lines, all read at once when the reader holds them already:
    plain `name: value` lines ending in CRLF up to the blank line, at most `MAX_HEADERS`
    (what the line-by-line reading makes of them); None leaves the stream as it was."""
    peek = getattr(stream, "peek", None)
    if peek is None:
        return None
    buffered = peek(0)  # what the reader holds (one read from the socket if it holds nothing)
    end = buffered.find(b"\r\n\r\n")
    if not 0 <= end < MAX_LINE:  # (then no line in it is longer than a line may be)
        return None
    text = buffered[:end + 2].decode("iso-8859-1")
    if not _PLAIN_BLOCK(text):
        return None
    headers = _PLAIN_PAIR(text)
    if len(headers) > MAX_HEADERS:
        return None  # refused line by line, as ever
    stream.read(end + 4)
    return headers


def _will_close(version: str, headers: list[tuple[str, str]]) -> bool:
    """As `http.client` decides: HTTP/1.1 keeps the connection unless told `close`,
    HTTP/1.0 closes it unless told `keep-alive`."""
    tokens: set[str] = set()
    keep_alive = False
    for name, value in headers:
        lower = name.lower()
        if lower in ("connection", "proxy-connection"):
            tokens.update(token.strip().lower() for token in value.split(","))
        elif lower == "keep-alive":
            keep_alive = True
    if version == "HTTP/1.1":
        return "close" in tokens
    return not (keep_alive or "keep-alive" in tokens)
