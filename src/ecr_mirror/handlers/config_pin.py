"""The config at one version: what every planning shard of a run plans.

The scheduler reads the config once, with its version (`read_versioned`): the
SSM parameter's Version, or the S3 object's ETag (asked with the ETag it has, so
an unchanged object costs a 304). That one read decides the shards, builds the
Mirror's settings and is split; its version is what the shards pin. Each shard
reads the config again (`read_at`) and plans it only if it is still that version
(S3: `If-Match`; SSM: the Version it answers). Reading an older version would
take GetObjectVersion, or a `name:version` selector whose IAM resource AWS does
not document: so a config changed during a run fails its remaining shards loudly
(UsageError; to the DLQ and its alarm) and the next run plans the new one. A
shard never plans a config other than the one that was split.
"""

from __future__ import annotations

import os

from botocore.exceptions import BotoCoreError, ClientError

from .. import aws
from ..errors import UsageError
from ..sync.config import MirrorConfig
from . import config_s3
from .common import _parsed, ssm_refusal


def read_versioned() -> tuple[MirrorConfig, str] | None:
    """(the current config, its version: "s3:<ETag>" or "ssm:<n>"), read once;
    None when no config store is set. Refusals read as `read_config`'s do."""
    url = os.environ.get(config_s3.ENV)
    if url:
        text, etag = config_s3.read_tagged(url, max_age=0, fresh=True)
        return _parsed(text, url), "s3:" + etag
    name = os.environ.get("ECR_MIRROR_CONFIG_PARAMETER")
    if not name:
        return None
    try:
        answer = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except (ClientError, BotoCoreError) as exc:
        raise ssm_refusal(name, exc) from None
    return _parsed(answer["Value"], f"SSM parameter {name}"), f"ssm:{answer['Version']}"


def read_at(version: str) -> MirrorConfig:
    """The config, if the store still holds `version` (a shard's pin)."""
    url = os.environ.get(config_s3.ENV)
    name = os.environ.get("ECR_MIRROR_CONFIG_PARAMETER")
    store, _, pinned = version.partition(":")
    try:
        if url and store == "s3":
            bucket, key = config_s3.split(url)
            answer = aws.client("s3").get_object(Bucket=bucket, Key=key, IfMatch=pinned)
            text, origin = answer["Body"].read().decode("utf-8"), url
        elif name and not url and store == "ssm":
            answer = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
            text, origin = answer["Value"], f"SSM parameter {name}"
            if f"ssm:{answer['Version']}" != version:
                raise UsageError(f"the config in {origin} is version {answer['Version']}, not {pinned} "
                                 "that this run was split from: this shard is not planned against "
                                 "another config; the next run plans the new one")
        else:
            raise UsageError(f"config version {version!r} is not one this function's config store has "
                             f"({config_s3.ENV} or ECR_MIRROR_CONFIG_PARAMETER)")
    except (ClientError, BotoCoreError) as exc:
        code = aws.error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        where = url or f"SSM parameter {name}"
        raise UsageError(f"cannot read the config {version} from {where}: {code}: "
                         f"{aws.error_message(exc) if isinstance(exc, ClientError) else exc}"
                         "; it changed since the run was split: this shard is not planned "
                         "against another config") from None
    except UnicodeDecodeError:
        raise UsageError(f"the config in {url} is not UTF-8 text") from None
    return _parsed(text, origin)
