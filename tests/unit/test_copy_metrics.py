"""The worker's copy figures as CloudWatch metrics (EMF lines on stdout)."""

from __future__ import annotations

import json

from ecr_mirror.copy import CopyReport
from ecr_mirror.copy.report import COPIED
from ecr_mirror.handlers.common import metrics, record_copy_metrics


def emitted(capsys) -> dict[str, list[float]]:
    metrics.flush_metrics()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for line in lines for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    return {name: [float(v) for line in lines if name in line
                   for v in (line[name] if isinstance(line[name], list) else [line[name]])]
            for name in names}


def test_mounted_blobs_and_bytes_are_metrics_beside_the_uploaded_ones(capsys):
    capsys.readouterr()
    report = CopyReport(source="docker.io/library/nginx:1", target="mirror/nginx:1", status=COPIED,
                        blobs_uploaded=1, bytes_uploaded=1000, blobs_mounted=2, bytes_mounted=3 * 2**20)
    record_copy_metrics(report)
    figures = emitted(capsys)
    assert figures["BlobsMounted"] == [2.0] and figures["BytesMounted"] == [3.0 * 2**20]
    assert figures["BlobsUploaded"] == [1.0] and figures["BytesUploaded"] == [1000.0]
