"""One Lambda function instance, as a process of its own (for bench/sync_bench.py).

    python bench/lambda_runner.py scheduler --out FILE
    python bench/lambda_runner.py worker --out FILE

The environment is the function's (the parent sets it: endpoints, queue URL,
config parameter). `scheduler` invokes the real scheduler handler once with
events/scheduled.json, as EventBridge Scheduler would. `worker` is what
Lambda's SQS event source does for one concurrent instance of the worker
function: receive one message (the template's batch size), invoke the real
worker handler with it, delete it unless reported failed; until the queue is
empty. Each copy report, the handlers' answers and any failure are written to
FILE as JSON, so that the parent measures this process alone (os.wait4).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ecr_mirror_testing.lambdas import FakeContext, deliver

REPO = Path(__file__).resolve().parent.parent

WORKER_BATCH_SIZE = 1  # template.yaml: the worker's SQS event source mapping


def run_scheduler() -> dict:
    from ecr_mirror.handlers import scheduler

    event = json.loads((REPO / "events" / "scheduled.json").read_text())
    return {"answer": scheduler.handler(event, FakeContext())}


def run_worker() -> dict:
    import os

    import boto3

    from ecr_mirror.handlers import worker

    reports: list[dict] = []
    original = worker.record_handler

    def record_handler(record, lambda_context=None):  # keep each image's report; the worker itself is unchanged
        try:
            report = original(record, lambda_context)
        except Exception as exc:  # a failed image: the worker reports it to the event source
            reports.append({"status": "failed", "source": json.loads(record.body).get("source"),
                            "error": str(exc)})
            raise
        reports.append(report)
        return report

    worker.record_handler = record_handler
    sqs, queue_url = boto3.client("sqs"), os.environ["ECR_MIRROR_QUEUE_URL"]
    failed: list[str] = []
    invocations = 0
    while True:
        messages, failures = deliver(sqs, queue_url, worker.handler, batch_size=WORKER_BATCH_SIZE)
        if not messages:
            # An image handed back (another repository was uploading a layer it
            # needs) is a delayed message: Lambda's event source would deliver it.
            attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            if int(attributes.get("ApproximateNumberOfMessagesDelayed", "0")):
                time.sleep(0.5)
                continue
            break
        invocations += 1
        # A failed message is left on the queue; the bench reports it and fails.
        failed += [m["Body"] for m in messages if m["MessageId"] in failures]
        if failures:
            break
    return {"invocations": invocations, "reports": reports, "failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("function", choices=["scheduler", "worker"])
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    args = parser.parse_args()
    started = time.monotonic()
    result = run_scheduler() if args.function == "scheduler" else run_worker()
    result["wall_s"] = time.monotonic() - started
    Path(args.out).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
