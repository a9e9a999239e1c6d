"""boto3's ECR client, configured for long streamed uploads."""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import InvalidRegionError, NoRegionError, ProfileNotFound

from ..errors import UsageError


def make_ecr_client(region: str | None = None, *, concurrency: int = 4, session=None):
    """An ECR client from boto3's usual chain (env, profile, role).

    `AWS_ENDPOINT_URL_ECR` points it at an emulator. Throttling (PutImage has
    a 10 TPS default) and 5xx answers are retried by botocore in standard mode.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": 10},
        max_pool_connections=max(10, concurrency * 2 + 2),
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra="ecr-mirror/0.1",
    )
    try:
        return (session or boto3.session.Session()).client("ecr", region_name=region, config=config)
    except NoRegionError:
        raise UsageError("no AWS region: pass --region (e.g. --region eu-west-1), or set "
                         "AWS_REGION or a region in your AWS profile") from None
    except (InvalidRegionError, ProfileNotFound) as exc:
        raise UsageError(f"{str(exc).rstrip('.')}; pass a region such as --region eu-west-1") from None
