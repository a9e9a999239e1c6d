"""The mirror config from an S3 object (ConfigStore=s3): no size limit worth
the name, where an SSM parameter holds 4 KB (Standard) or 8 KB (Advanced).

The text is cached per object for `max_age` seconds, like the SSM parameter;
after that (or when `fresh`), it is asked for again with the cached ETag
(`If-None-Match`), so an unchanged config costs a 304 and no transfer."""

from __future__ import annotations

import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from .. import aws
from ..errors import UsageError

ENV = "ECR_MIRROR_CONFIG_OBJECT"  # s3://bucket/key

_lock = threading.Lock()
_cache: dict[str, tuple[float, str, str]] = {}  # url -> (read at, ETag, text)


def split(url: str) -> tuple[str, str]:
    """`s3://bucket/key` as (bucket, key); anything else is the user's mistake."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise UsageError(f"{ENV} must be s3://BUCKET/KEY, not {url!r}")
    return bucket, key


def read(url: str, *, max_age: float, fresh: bool = False) -> str:
    """The object's text, from the cache when younger than `max_age` seconds."""
    return read_tagged(url, max_age=max_age, fresh=fresh)[0]


def read_tagged(url: str, *, max_age: float, fresh: bool = False) -> tuple[str, str]:
    """(the object's text, its ETag): what `read` reads, with the version it is."""
    bucket, key = split(url)
    with _lock:
        cached = _cache.get(url)
    if cached and not fresh and time.monotonic() - cached[0] < max_age:
        return cached[2], cached[1]
    extra = {"IfNoneMatch": cached[1]} if cached else {}
    try:
        answer = aws.client("s3").get_object(Bucket=bucket, Key=key, **extra)
        body = answer["Body"].read()
    except ClientError as exc:
        code = aws.error_code(exc)
        if cached and code in ("304", "NotModified"):
            text, etag = cached[2], cached[1]
        elif code in ("NoSuchKey", "NoSuchBucket"):
            raise UsageError(f"{url} ({ENV}) does not exist; upload the mirror config: "
                             f"aws s3 cp mirror.yaml {url}") from None
        else:
            raise UsageError(f"cannot read the config from {url}: "
                             f"{code}: {aws.error_message(exc)}") from None
    except BotoCoreError as exc:  # S3 not reached (endpoint, network): said, not a traceback
        raise UsageError(f"cannot read the config from {url}: {aws.explain(exc, 's3')}") from None
    else:
        try:
            text, etag = body.decode("utf-8"), answer.get("ETag", "")
        except UnicodeDecodeError:
            raise UsageError(f"the config in {url} is not UTF-8 text") from None
    with _lock:
        _cache[url] = (time.monotonic(), etag, text)
    return text, etag
