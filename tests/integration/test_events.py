"""EventBridge events (events.py): `Image Mirrored` when an ECR tag moves, `Image
Failed` when an image failed for good, was rejected or superseded; never a failed
copy because an event could not be sent.

moto's EventBridge (server mode, the same emulator as ECR) with a rule on the bus
that forwards ecr-mirror's events to an SQS queue: the events are read back there,
as a user's rule would receive them.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from ecr_mirror import cli, events, queue
from ecr_mirror.copy.report import COPIED, UNCHANGED, CopyReport
from ecr_mirror.handlers import worker
from ecr_mirror_testing.cosign import Signer
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, deliver, sqs_record
from tests.integration.conftest import ecr_image
from tests.integration.test_cli_errors import one_line_usage_error, run_cli
from tests.integration.test_schedule import EVENTS, PARAMETER, app, drain, queued_targets, scheduled_run  # noqa: F401 (app: a fixture)

pytestmark = pytest.mark.integration
PUBLIC = Signer.generate().public_pem


def test_the_report_says_what_the_tag_held_before(registry, copy, repo_name):
    first = make_image(registry.url, "events/prev", "v1", layers=[layer_bytes("prev-1")])
    report = copy("events/prev:v1", f"{repo_name}:stable")
    assert report.status == "copied" and report.previous_digest is None
    assert report.as_dict()["previousDigest"] is None
    second = make_image(registry.url, "events/prev", "v2", layers=[layer_bytes("prev-2")])
    report = copy("events/prev:v2", f"{repo_name}:stable")
    assert report.status == "copied"
    assert (report.previous_digest, report.target_digest) == (first.digest, second.digest)
    again = copy("events/prev:v2", f"{repo_name}:stable")
    assert again.status == "unchanged" and again.previous_digest == second.digest


# -- the worker and CopyOne, through the real handlers ------------------------------

CONFIG = """
images:
  - source: nginx
    tags: [stable]
"""


def rule_to_queue(bus: str) -> Callable[[], list[dict]]:
    """A rule on `bus` (made when not `default`) sending ecr-mirror's events to a new
    queue; returns a function reading the events that arrived since the last call."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    out = sqs.create_queue(QueueName=f"{bus}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=out, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if bus != "default":
        events.create_event_bus(Name=bus)
    events.put_rule(Name="to-queue", EventBusName=bus,
                    EventPattern=json.dumps({"source": ["ecr-mirror"]}))
    events.put_targets(Rule="to-queue", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])

    def received() -> list[dict]:
        got = []
        while messages := sqs.receive_message(QueueUrl=out, MaxNumberOfMessages=10).get("Messages"):
            for m in messages:
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=out, ReceiptHandle=m["ReceiptHandle"])
        return got

    return received


@pytest.fixture
def bus(app, monkeypatch):
    """The stack's bus (`default`), its events read back from a queue; the config: nginx:stable."""
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=CONFIG, Type="String", Overwrite=True)
    monkeypatch.setenv("ECR_MIRROR_EVENT_BUS", "default")
    return rule_to_queue("default")


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: What a hostile EventBridge answers PutEvents: (status, JSON body).
ANSWERS = {
    "denied": (400, {"__type": "AccessDeniedException",
                     "message": "User is not authorized to perform: events:PutEvents"}),
    "refused-entries": (200, {"FailedEntryCount": 1, "Entries": [
        {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service error"}]}),
}


def hostile_eventbridge(outage: str, calls: list | None = None) -> str:
    """An EventBridge endpoint on 127.0.0.1 answering every call as ANSWERS[outage] says
    ("accept": each entry accepted); each request's JSON is appended to `calls`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if calls is not None:
                calls.append(request)
            status, body = ANSWERS.get(outage) or (200, {"FailedEntryCount": 0, "Entries": [
                {"EventId": str(i)} for i, _ in enumerate(request["Entries"])]})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def metric_values(capsys, name: str) -> list:
    """The values of metric `name` the handlers flushed (EMF lines on stdout)."""
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{") and "_aws" in line]
    return [m[name] for m in emitted if name in m]


def test_a_moved_tag_is_one_image_mirrored_event_with_both_digests(app, bus, registry, ecr):
    sqs, queue_url = app
    first = make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("ev-1")])
    scheduled_run()
    drain(sqs, queue_url)
    [event] = bus()
    assert (event["source"], event["detail-type"]) == ("ecr-mirror", "Image Mirrored")
    detail = event["detail"]
    assert detail["repository"] == "mirror/dockerhub/library/nginx" and detail["tag"] == "stable"
    assert (detail["digest"], detail["previousDigest"]) == (first.digest, None)
    assert detail["source"] == "docker.io/library/nginx:stable" and detail["status"] == "copied"
    assert detail["counts"]["blobsUploaded"] == 2 and detail["counts"]["manifestsPut"] == 1

    second = make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("ev-2")])
    scheduled_run()
    drain(sqs, queue_url)
    [event] = bus()
    assert event["detail-type"] == "Image Mirrored"
    assert (event["detail"]["digest"], event["detail"]["previousDigest"]) == (second.digest, first.digest)

    # Unchanged: the scheduler queues nothing, and a message for it anyway moves nothing.
    assert scheduled_run()["queued"] == 0
    body = json.dumps({"source": "docker.io/library/nginx:stable",
                       "target": "mirror/dockerhub/library/nginx:stable"})
    assert worker.handler({"Records": [sqs_record(body)]}, FakeContext()) == {"batchItemFailures": []}
    assert bus() == []


def test_a_failure_is_announced_once_on_the_last_receive_before_the_dlq(app, bus, registry, ecr,
                                                                          monkeypatch):
    sqs, queue_url = app
    monkeypatch.setattr(queue, "RETRY_DELAY_SECONDS", 0)  # visible again at once
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({
        "source": "docker.io/library/nginx:gone", "target": "mirror/gone:gone"}))
    for receive in range(1, queue.MAX_RECEIVES + 1):
        messages, failed = deliver(sqs, queue_url, worker.handler)
        assert len(messages) == 1 and failed  # handed back each time: the DLQ takes it after
        if receive < queue.MAX_RECEIVES:
            assert bus() == []  # tried again: not final yet
    [event] = bus()
    assert event["detail-type"] == "Image Failed"
    detail = event["detail"]
    assert detail["status"] == "failed" and detail["error"]["type"] == "ManifestUnknown"
    assert (detail["repository"], detail["tag"], detail["digest"]) == ("mirror/gone", "gone", None)


def test_a_rejected_image_is_an_image_failed_event(app, bus, registry, ecr):
    boto3.client("ssm").put_parameter(Name="/ecr-mirror/cosign.pub", Value=PUBLIC.decode(),
                                      Type="SecureString", Overwrite=True)
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("ev-unsigned")])
    answer = worker.handler(json.loads((EVENTS / "copy-one-signed.json").read_text()), FakeContext())
    assert answer["status"] == "rejected"
    [event] = bus()
    assert event["detail-type"] == "Image Failed"
    assert event["detail"]["status"] == "rejected"
    assert event["detail"]["rejectedReason"] == answer["rejectedReason"]


@pytest.mark.parametrize("outage", ["denied", "unreachable", "refused-entries"])
def test_an_eventbridge_outage_fails_no_copy_and_is_counted(app, bus, registry, ecr, monkeypatch,
                                                            capsys, outage):
    sqs, queue_url = app
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("ev-outage")])
    scheduled_run()
    if outage == "unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", f"http://127.0.0.1:{closed_port()}")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", hostile_eventbridge(outage))
    capsys.readouterr()
    messages, failed = deliver(sqs, queue_url, worker.handler)
    assert len(messages) == 1 and not failed  # the copy stands, the message is deleted
    assert queued_targets(sqs, queue_url) == 0
    assert ecr_image(ecr, "mirror/dockerhub/library/nginx", tag="stable")
    assert metric_values(capsys, "EventsFailed") == [[1.0]]
    assert bus() == []


# -- the CLI --------------------------------------------------------------------------

@pytest.fixture
def cli_bus(ecr, ecr_endpoint, monkeypatch):
    """A bus `ecr-mirror-cli` on the emulator, its events read back from a queue."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    return rule_to_queue("ecr-mirror-cli")


def test_the_cli_puts_the_same_events_with_events_flags(registry, source, ecr, cli_bus, repo_name,
                                                         tmp_path, capsys):
    first = make_image(registry.url, repo_name, "1", layers=[layer_bytes(f"{repo_name}-cli-1")])
    ref = f"{source.host}/{repo_name}:1"
    assert cli.main(["copy", ref, "mirror/cli-events:1", "--insecure", "--json",
                     "--event-bus", "ecr-mirror-cli"]) == 0
    [event] = cli_bus()
    assert event["detail-type"] == "Image Mirrored"
    assert event["detail"]["repository"] == "mirror/cli-events" and event["detail"]["tag"] == "1"
    assert (event["detail"]["digest"], event["detail"]["previousDigest"]) == (first.digest, None)
    assert json.loads(capsys.readouterr().out)["targetDigest"] == first.digest  # stdout: the report only

    config = tmp_path / "mirror.yaml"
    config.write_text(f"registries:\n  {source.host}: {{insecure: true}}\n"
                      f"images:\n  - source: {source.host}/{repo_name}\n    tags: ['1', '2']\n"
                      "    target: mirror/cli-events\n")
    second = make_image(registry.url, repo_name, "2", layers=[layer_bytes(f"{repo_name}-cli-2")])
    assert cli.main(["sync", "--config", str(config), "--event-bus", "ecr-mirror-cli"]) == 0
    [event] = cli_bus()  # 1 unchanged (none), 2 copied (one)
    assert event["detail"]["tag"] == "2" and event["detail"]["digest"] == second.digest
    # Without the flag, nothing is announced.
    make_image(registry.url, repo_name, "2", layers=[layer_bytes(f"{repo_name}-cli-3")])
    assert cli.main(["sync", "--config", str(config)]) == 0
    assert cli_bus() == []


def test_the_cli_warns_once_when_events_cannot_be_sent_and_the_copy_stands(
        registry, source, ecr, repo_name):
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(f"{repo_name}-cli-down")])
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    result = run_cli("copy", f"{source.host}/{repo_name}:1", "mirror/cli-down:1", "--insecure",
                     "--events", env={**env, "AWS_ENDPOINT_URL_EVENTBRIDGE": hostile_eventbridge("denied")})
    assert result.returncode == 0 and result.stdout.startswith("copied "), result
    err = result.stderr
    warnings = [line for line in err.splitlines() if "EventBridge" in line]
    assert len(warnings) == 1 and "AccessDeniedException" in warnings[0], err
    assert "bus default" in warnings[0]
    assert ecr_image(ecr, "mirror/cli-down", tag="1")


@pytest.mark.parametrize("bus", ["no spaces", "*", "arn:aws:sqs:us-east-1:123456789012:q"])
def test_a_bad_bus_name_is_one_line(bus):
    result = run_cli("copy", "nginx:stable", "mirror/nginx", "--event-bus", bus)
    one_line_usage_error(result, "--event-bus")
    assert "is not an EventBridge bus" in result.stderr


def test_many_images_are_put_ten_to_a_call_each_on_the_bus_given(aws_env, monkeypatch):
    calls: list = []
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", hostile_eventbridge("accept", calls))
    reports = [CopyReport(source=f"docker.io/library/app:{i}", target=f"mirror/app:{i}",
                          status=COPIED, target_digest="sha256:" + "a" * 64) for i in range(23)]
    reports.append(CopyReport(source="docker.io/library/app:x", target="mirror/app:x",
                              status=UNCHANGED))
    outcome = events.announce([(r, True) for r in reports], "ecr-mirror", "us-east-1")
    assert (outcome.sent, outcome.failed) == (23, 0)
    assert [len(c["Entries"]) for c in calls] == [10, 10, 3]
    entries = [e for c in calls for e in c["Entries"]]
    assert {(e["Source"], e["DetailType"], e["EventBusName"]) for e in entries} == {
        ("ecr-mirror", "Image Mirrored", "ecr-mirror")}
    assert [json.loads(e["Detail"])["tag"] for e in entries] == [str(i) for i in range(23)]


def test_the_users_mistake_stays_one_line_with_events(registry, source, repo_name):
    """No AWS credentials: the copy's one line, not a second one about the event."""
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(f"{repo_name}-cli-nocreds")])
    result = run_cli("copy", f"{source.host}/{repo_name}:1", "mirror/cli-nocreds:1", "--insecure",
                     "--events", env={"AWS_REGION": "us-east-1"})
    one_line_usage_error(result, "no AWS credentials")
