"""boto3's ECR client, configured for long streamed uploads."""

from __future__ import annotations

import boto3
from botocore.config import Config


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
    return (session or boto3.session.Session()).client("ecr", region_name=region, config=config)
