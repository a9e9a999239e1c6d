"""Two worker invocations in two processes racing on a shared layer (issue 14, item 4).

Each process is what Lambda's SQS event source runs for one concurrent worker
instance (bench/lambda_runner.py): the real worker handler, its own boto3
clients and lease-table owner, against the same strict ECR emulator, lease
table and mount endpoint as the other. The proxy holds blob GETs until both
processes have one in flight, so both copies are under way at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from ecr_mirror_testing import strict_ecr
from tests.integration.conftest import tags_in_ecr
from tests.integration.test_mount import SHARED, TABLE, A, B, endpoint, images, shared_digest, table  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
RUNNER = Path(__file__).resolve().parents[2] / "bench" / "lambda_runner.py"


def worker_env(ecr_endpoint: str, source_url: str, queue_url: str, mount_url: str, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECR_MIRROR_", "POWERTOOLS_"))}
    env.update({
        "AWS_ENDPOINT_URL": ecr_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
        "ECR_MIRROR_PREFIX": "mirror", "ECR_MIRROR_QUEUE_URL": queue_url, "ECR_MIRROR_CONCURRENCY": "1",
        "ECR_MIRROR_LEASE_TABLE": TABLE, "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={source_url}",
        "ECR_MIRROR_BLOB_MOUNTING": "enabled", "ECR_MIRROR_ECR_REGISTRY_ENDPOINT": mount_url,
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror", "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
        "DOCKER_CONFIG": str(tmp / "none"), "NO_PROXY": "127.0.0.1,localhost",
    })
    return env


def test_two_worker_processes_racing_on_a_shared_layer_upload_it_once(
        source, ecr, ecr_endpoint, table, endpoint, images, tmp_path):
    digest = shared_digest(images)
    ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    sqs = boto3.client("sqs", endpoint_url=ecr_endpoint, region_name="us-east-1")
    processes = []
    source.hold_until("GET blob", 2, timeout=60)  # both workers fetching at once
    for name, upstream, target in (("first", "team/first:v1", f"{A}:v1"), ("second", "team/second:v1", f"{B}:v1")):
        # One queue per worker: each process takes its own image (and its hand-backs) only.
        queue_url = sqs.create_queue(QueueName=f"copy-{name}")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(
            {"source": upstream, "target": target, "platforms": []}))
        out = tmp_path / f"{name}.json"
        env = worker_env(ecr_endpoint, source.url, queue_url, endpoint.url, tmp_path)
        processes.append((out, subprocess.Popen([sys.executable, str(RUNNER), "worker", "--out", str(out)],
                                                env=env)))
    for _, process in processes:
        assert process.wait(timeout=240) == 0
    results = [json.loads(out.read_text()) for out, _ in processes]
    assert source.peak["GET blob"] >= 2  # the two copies overlapped
    reports = [r for result in results for r in result["reports"]]
    assert [r["status"] for r in reports] == ["copied", "copied"], reports
    assert all(not result["failed"] for result in results)
    # Both complete, each tag on its upstream image, every blob of it in ECR.
    first, second = images
    for repository, image in ((A, first), (B, second)):
        assert tags_in_ecr(ecr, repository) == {"v1": image.digest}
        layers = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=image.blobs)
        assert {x["layerAvailability"] for x in layers["layers"]} == {"AVAILABLE"} and not layers["failures"]
    # The shared layer: fetched once, uploaded once, mounted into the other repository.
    gets = [p for method, p, _ in source.requests if method == "GET" and p.split("?")[0].endswith(digest)]
    assert len(gets) == 1
    assert len(endpoint.server.mounted) == 1 and endpoint.server.mounted[0][2] == digest
    assert len(SHARED) <= strict_ecr.uploaded_bytes[A] + strict_ecr.uploaded_bytes[B] < 2 * len(SHARED)
    # Nothing left marked.
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert not [i for i in items if i["lease"]["S"].startswith(("uploading#", "waiting#"))]
