#!/usr/bin/env python3
"""A guided tour of ecr-mirror, entirely on this machine (`make demo`).

Part 1, one image with the one-image Lambda handler:

1. starts a real container registry (the CNCF distribution registry) on
   127.0.0.1 and pushes a multi-arch sample image to it as `library/nginx:stable`;
2. starts a local ECR emulator (moto, with real ECR's rules) in its own process;
3. sets the environment variables the Lambda function would have, with
   Docker Hub (`docker.io`) redirected to the local registry;
4. calls the real Lambda handler `ecr_mirror.handlers.copy_one.handler` with
   `events/copy-one.json` ({"source": "nginx:stable", ...});
5. calls it again: nothing changed upstream, so nothing is copied and no
   image is pulled;
6. asks the ECR emulator, with plain boto3, what it now holds.

Part 2, the scheduled application (scheduler -> SQS -> worker -> ECR):

7. pushes more tags upstream (nginx, library/redis, bitnami/app);
8. creates the stack's SQS queue, Secrets Manager secret and SSM config
   parameter on the emulator (moto serves every AWS service it has);
9. calls the real scheduler handler with `events/dry-run.json`: the plan;
10. calls it with `events/scheduled.json`: the images are queued;
11. drains the queue through the real worker handler, as Lambda's SQS event
    source would, and reads the copies back from ECR;
12. runs the schedule again: everything is unchanged, nothing is pulled;
13. moves one upstream tag: the next run copies exactly that image.

Only 127.0.0.1 is contacted, no AWS account or Docker is needed, and every
process and temporary directory is removed at the end, also on Ctrl-C.

    .venv/bin/python tools/demo.py            # from the repository root
    .venv/bin/python tools/demo.py --verbose  # also show the Lambda's JSON logs and metrics
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ecr_mirror_testing import hub, images
from ecr_mirror_testing.proxy import SourceProxy
from ecr_mirror_testing.registry import LocalRegistry

ROOT = Path(__file__).resolve().parent.parent

MiB = 1 << 20
SOURCE_REPO, SOURCE_TAG = "library/nginx", "stable"  # what "nginx:stable" means on Docker Hub
PLATFORMS = hub.NGINX_PLATFORMS
BIG_LAYER_SIZE, SMALL_LAYER_SIZE = hub.NGINX_BIG_LAYER, hub.NGINX_SMALL_LAYER
REGION = "us-east-1"
FAKE_CREDENTIALS = hub.FAKE_CREDENTIALS


# -- printing ------------------------------------------------------------------
_BOLD = "\033[1m" if sys.stdout.isatty() and os.environ.get("NO_COLOR") is None else ""
_RESET = "\033[0m" if _BOLD else ""


def section(number: int, title: str, *explanation: str) -> None:
    print(f"\n{_BOLD}== {number}. {title} =={_RESET}", flush=True)
    for line in explanation:
        print(f"   {line}")


def part(title: str, *explanation: str) -> None:
    print(f"\n{_BOLD}##### {title} #####{_RESET}")
    for line in explanation:
        print(f"   {line}")


def show(label: str, value: object) -> None:
    print(f"   {label + ':':<22} {value}", flush=True)


def size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} B"


class DemoFailed(Exception):
    """Something did not go as the demo expects; the message says what."""


# -- child processes ---------------------------------------------------------------
# Ctrl-C in a terminal signals every process of the foreground group. The demo's
# servers must not die under a copy that is still running (it would then retry
# against dead sockets before giving up): they are kept out of reach of Ctrl-C,
# and the demo stops them itself, in its `finally`.
@contextmanager
def sigint_ignored():
    """Processes started inside inherit an ignored SIGINT (an ignored signal survives exec)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_ecr_emulator(stack: ExitStack, workdir: Path) -> str:
    """Run the ECR emulator in its own process until the demo ends; return its endpoint URL."""
    try:
        proc, url = hub.spawn_ecr_emulator(workdir / "ecr-emulator.log")
    except RuntimeError as exc:
        raise DemoFailed(str(exc)) from exc
    stack.callback(hub.stop_process, proc)
    return url


# -- the Lambda's environment and context ---------------------------------------
def set_lambda_environment(ecr_url: str, registry_url: str, workdir: Path, verbose: bool) -> dict:
    """What the deployed function has, pointed at the local stand-ins."""
    # Nothing from this shell may leak in: no AWS profile or real credentials,
    # no instance metadata lookups, no proxies, no other ecr-mirror settings.
    for name in list(os.environ):
        if name.startswith(("AWS_", "ECR_MIRROR_", "POWERTOOLS_")) or name.lower().endswith("_proxy"):
            del os.environ[name]
    lambda_env = {
        "AWS_ENDPOINT_URL_ECR": ecr_url,
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "ECR_MIRROR_PREFIX": "mirror",
        "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={registry_url}",
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror",
        "POWERTOOLS_LOG_LEVEL": "INFO" if verbose else "WARNING",
        "DOCKER_CONFIG": str(workdir / "no-docker-config"),  # does not exist: no credentials
    }
    os.environ.update(lambda_env)
    os.environ.update({
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        # Powertools prints each invocation's metrics (EMF JSON) to stdout, where
        # Lambda turns them into CloudWatch metrics; here they would only clutter
        # the tour. Powertools checks this when it flushes, at the end of each call.
        "POWERTOOLS_METRICS_DISABLED": "false" if verbose else "true",
    })
    return lambda_env


class FakeLambdaContext:
    """The attributes of the Lambda context object that the handler's logger reads."""

    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    log_stream_name = "demo"

    def __init__(self, function_name: str = "ecr-mirror-copy-one", timeout_seconds: int = 900) -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def invoke(handler, event: dict, function_name: str = "ecr-mirror-copy-one") -> dict:
    """Call `handler(event, context)` as the Lambda runtime would; return its answer.

    The call runs in a helper thread and the main thread only waits, so a Ctrl-C
    is handled at once: the demo then stops its servers and exits, instead of
    waiting for the copy's upload threads to finish or give up.
    """
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["answer"] = handler(event, FakeLambdaContext(function_name))
        except BaseException as exc:  # handed to the main thread below
            outcome["error"] = exc

    thread = threading.Thread(target=call, name="lambda-invocation", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["answer"]


# -- the tour, part 1: one image ---------------------------------------------------------
def run(stack: ExitStack, verbose: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ecr-mirror-demo-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)

    part("Part 1: one image, on demand",
         "The copy_one function, for a copy right now (the Lambda console, `aws lambda invoke`).")

    section(1, "A source registry with a multi-arch image",
            "Docker Hub stand-in: the CNCF distribution registry (docker-registry) on 127.0.0.1.")
    try:
        registry = LocalRegistry()
        stack.callback(registry.stop)
        with sigint_ignored():
            registry.start()
    except RuntimeError as exc:  # no docker-registry binary, or it would not start
        raise DemoFailed(f"{exc}\n(`make demo` installs the Debian package docker-registry)") from exc
    show("registry", registry.url)
    upstream = hub.push_nginx_stable(registry.url)
    blobs = upstream.all_blobs()
    blob_bytes = BIG_LAYER_SIZE + 2 * len(PLATFORMS) * SMALL_LAYER_SIZE  # layers only, roughly
    show("pushed", f"{SOURCE_REPO}:{SOURCE_TAG} (an OCI image index)")
    for child in upstream.children:
        kind = (f"attestation for {child.attestation_for[:19]}…" if child.attestation_for
                else "/".join(p for p in child.platform if p))
        show("  manifest", f"{child.digest[:19]}…  {kind}")
    show("blobs", f"{len(blobs)} (about {size(blob_bytes)}; one {size(BIG_LAYER_SIZE)} base layer "
                  "shared by both platforms)")
    show("upstream digest", upstream.digest)

    section(2, "A local ECR",
            "moto's ECR API with real ECR's rules, in its own process "
            "(python -m ecr_mirror_testing.ecr_server --port 0).")
    ecr_url = start_ecr_emulator(stack, workdir)
    show("ECR endpoint", ecr_url)

    section(3, "The Lambda function's environment",
            "Set before the handler is imported. ECR_MIRROR_REGISTRY_ENDPOINTS sends requests",
            'for docker.io (where "nginx:stable" lives) to the local registry instead.')
    for name, value in set_lambda_environment(ecr_url, registry.url, workdir, verbose).items():
        print(f"   {name}={value}")
    if not verbose:
        print("   (The demo also sets POWERTOOLS_METRICS_DISABLED=true to keep the metrics' JSON off")
        print("   this screen; on Lambda those lines become CloudWatch metrics.)")

    # Imported only now: the handler's logger and clients read the environment.
    from ecr_mirror.handlers.copy_one import handler

    event = json.loads((ROOT / "events" / "copy-one.json").read_text())
    section(4, "Invoke the Lambda handler",
            "ecr_mirror.handlers.copy_one.handler(event, context) with events/copy-one.json:",
            json.dumps(event))
    first = invoke(handler, event)
    print("   The answer (the copy report):")
    print("\n".join("     " + line for line in json.dumps(first, indent=2).splitlines()))
    expect(first, "copied")
    if first["sourceDigest"] != upstream.digest or first["targetDigest"] != upstream.digest:
        raise DemoFailed(f"digests differ: upstream {upstream.digest}, report source "
                         f"{first['sourceDigest']}, target {first['targetDigest']}")
    print("   In short:")
    show("status", first["status"])
    show("same digest", "yes: source digest == target digest == upstream digest")
    show("blobs uploaded", f"{first['blobsUploaded']} ({size(first['bytesUploaded'])}), "
                           f"{first['blobsSkipped']} skipped")
    parts = first["requests"].get("ecr:UploadLayerPart", 0)
    show("upload parts", f"{parts} for {first['blobsUploaded']} blobs (the {size(BIG_LAYER_SIZE)} "
                         "layer is bigger than one ECR upload part)")
    show("manifests put", f"{first['manifestsPut']} ({len(upstream.children)} children by digest, "
                          "then the tagged index)")
    show("manifests fetched", f"{first['manifestsFetched']} (the pulls Docker Hub would count)")

    section(5, "Invoke it again",
            "Upstream has not changed, so the function only compares digests: no blob moves",
            "and no manifest is pulled (the warm function reuses its clients, as on Lambda).")
    second = invoke(handler, event)
    expect(second, "unchanged")
    show("status", second["status"])
    show("target digest", second["targetDigest"])
    show("blobs uploaded", second["blobsUploaded"])
    show("manifests fetched", second["manifestsFetched"])
    show("requests", ", ".join(f"{k}={v}" for k, v in sorted(second["requests"].items())) or "-")
    show("took", f"{second['durationSeconds']:.2f} s")
    if second["manifestsFetched"] != 0 or second["blobsUploaded"] != 0:
        raise DemoFailed("the second run should fetch no manifest and upload no blob")

    section(6, "What is in ECR now",
            "Plain boto3 against the emulator: batch_get_image on mirror/nginx:stable.")
    check_ecr(ecr_url, first["target"], upstream, blobs)

    run_scheduled(stack, registry, ecr_url, upstream)


# -- the tour, part 2: the scheduled application ---------------------------------------
CONFIG_PARAMETER = "/ecr-mirror/config"
QUEUE_NAME = "ecr-mirror-copy"
SECRET_NAME = "ecr-mirror/dockerhub"
WORKER_BATCH_SIZE = 1  # as template.yaml's SQS event source: one image per worker invocation
# The mirror list, as it would be written into the stack's SSM parameter.
CONFIG = """\
registries:
  docker.io:
    credentials: ecr-mirror/dockerhub  # a Secrets Manager secret: {"username", "password"}
defaults:
  targetPrefix: mirror                 # nginx -> mirror/dockerhub/library/nginx
images:
  - source: nginx                      # exact tags: no tag list is read at all
    tags: [stable, mainline]
  - source: library/redis              # a glob over the repository's tags
    tags: ["7.*"]
  - source: bitnami/app                # a semver range over release tags
    semver: ">=1.0 <2"
"""
UPSTREAM_TAGS = {  # what the source holds; True: the config above selects it
    "library/nginx": {"stable": True, "mainline": True},
    "library/redis": {"7.2.1": True, "7.2.2": True, "7.4.0": True, "8.0.0": False},
    "bitnami/app": {"0.9.0": False, "1.0.0": True, "1.1.0": True, "2.0.0": False},
}
SELECTED = {f"mirror/dockerhub/{repo}:{tag}"
            for repo, tags in UPSTREAM_TAGS.items() for tag, chosen in tags.items() if chosen}
MEDIA_TYPES = [images.OCI_INDEX, images.DOCKER_MANIFEST_LIST, images.OCI_MANIFEST,
               images.DOCKER_MANIFEST]


def aws_client(service: str, endpoint_url: str):
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION,
                        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def seed_upstream(registry_url: str) -> dict[str, str]:
    """Push every tag of UPSTREAM_TAGS but nginx:stable (part 1 pushed it); repo:tag -> digest."""
    mainline = images.make_image(registry_url, "library/nginx", "mainline",
                                 layers=[images.layer_bytes("nginx mainline")])
    digests = {"library/nginx:mainline": mainline.digest}
    for repo in ("library/redis", "bitnami/app"):
        for tag in UPSTREAM_TAGS[repo]:
            layers = [images.layer_bytes(f"{repo} base"), images.layer_bytes(f"{repo} {tag}")]
            digests[f"{repo}:{tag}"] = images.make_image(registry_url, repo, tag, layers=layers).digest
    return digests


def queue_depth(sqs, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url,
                                          AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def source_requests(proxy: SourceProxy) -> str:
    """What the source registry received, e.g. "HEAD manifest 7, GET manifest 0, GET blob 0"."""
    counts = dict(proxy.counts)
    counts.pop("GET other", None)  # the /v2/ version check a client starts with
    order = ["GET tags", "HEAD manifest", "GET manifest", "GET blob"]  # the last two (pulls): even at 0
    keys = order + sorted(set(counts) - set(order))
    return ", ".join(f"{key} {counts.get(key, 0)}" for key in keys if key in counts or key in order[2:])


def show_summary(answer: dict) -> None:
    show("summary", ", ".join(f"{key} {answer[key]}" for key in ("planned", "unchanged", "queued",
                                                                  "errors")))
    if answer["errors"]:
        raise DemoFailed(f"the scheduler reported errors: {json.dumps(answer['errorDetails'])}")


@contextmanager
def keeping_reports(worker):
    """Collect the copy report of every image the worker handles.

    For SQS events the worker answers only {"batchItemFailures": [...]}: that is
    all Lambda's event source needs, and the reports go to the logs and metrics.
    To print one line per image, the demo wraps the worker module's
    `record_handler` (which `worker.handler` looks up on every call) and keeps
    what it returns. Nothing else about the worker changes.
    """
    reports: list[dict] = []
    original = worker.record_handler

    def record_handler(record, lambda_context=None):  # Powertools passes the context
        report = original(record, lambda_context)
        reports.append(report)
        return report

    worker.record_handler = record_handler
    try:
        yield reports
    finally:
        worker.record_handler = original


def drain(sqs, queue_url: str, worker) -> list[dict]:
    """Feed the queue to the worker as Lambda's SQS event source does; return the reports.

    Receive a batch, invoke the function with it, delete the messages it did
    not report as failed. A failed one would stay on the queue for a retry:
    the demo stops instead.
    """
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    with keeping_reports(worker) as reports:
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=WORKER_BATCH_SIZE, AttributeNames=["All"],
                WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return reports
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
                "awsRegion": REGION} for m in messages]}
            answer = invoke(worker.handler, event, "ecr-mirror-worker")
            failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            if failed:
                bodies = [m["Body"] for m in messages if m["MessageId"] in failed]
                raise DemoFailed(f"the worker could not copy {bodies}; run with --verbose for its logs")


def ecr_digest(ecr, target: str) -> str:
    repository, _, tag = target.rpartition(":")
    answer = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                                 acceptedMediaTypes=MEDIA_TYPES)
    if answer.get("failures") or not answer.get("images"):
        raise DemoFailed(f"{target} is not in ECR: {answer.get('failures')}")
    return answer["images"][0]["imageId"]["imageDigest"]


def show_copies(ecr, reports: list[dict], upstream: dict[str, str]) -> None:
    """One line per copied image, its digest read back from ECR."""
    prefix = "mirror/dockerhub/"
    print(f"   {'in ECR under ' + prefix:<32} {'digest = upstream':>17} {'blobs uploaded':>15} "
          f"{'skipped':>8} {'manifests fetched':>18}")
    for report in sorted(reports, key=lambda r: r["target"]):
        if report["status"] != "copied":
            raise DemoFailed(f"{report['target']}: status {report['status']}, expected copied")
        key = report["source"].removeprefix("docker.io/")
        same = ecr_digest(ecr, report["target"]) == upstream[key]
        print(f"   {'  ' + report['target'].removeprefix(prefix):<32} {'yes' if same else 'NO':>17} "
              f"{report['blobsUploaded']:>15} {report['blobsSkipped']:>8} "
              f"{report['manifestsFetched']:>18}")
        if not same:
            raise DemoFailed(f"{report['target']}: the digest in ECR differs from upstream "
                             f"{upstream[key]}")


def run_scheduled(stack: ExitStack, registry: LocalRegistry, ecr_url: str,
                  nginx: images.PushedImage) -> None:
    part("Part 2: the scheduled application",
         "On AWS, EventBridge Scheduler invokes the scheduler function; it reads the mirror list",
         "from SSM, decides which images changed upstream and queues one SQS message for each;",
         "the worker function takes them from the queue and copies them. The same code, here:")

    section(7, "More images upstream",
            "Tags the config below selects, and some it must leave alone (marked \"not selected\").")
    upstream = {"library/nginx:stable": nginx.digest, **seed_upstream(registry.url)}
    for repo, tags in UPSTREAM_TAGS.items():
        show(repo, "  ".join(tag if chosen else f"({tag}: not selected)"
                             for tag, chosen in tags.items()))
    proxy = SourceProxy(registry.url)
    stack.callback(proxy.stop)
    proxy.start()
    print("   From now on docker.io goes through a small proxy in front of the registry that counts")
    print("   the requests: what Docker Hub would see (it counts each manifest GET as a pull).")
    show("counting proxy", f"{proxy.url} -> {registry.url}")

    section(8, "The stack's AWS resources, on the emulator",
            "moto serves SQS, SSM and Secrets Manager too: AWS_ENDPOINT_URL sends every client there.")
    os.environ["AWS_ENDPOINT_URL"] = ecr_url
    sqs = aws_client("sqs", ecr_url)
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    show("SQS queue", queue_url)
    aws_client("secretsmanager", ecr_url).create_secret(
        Name=SECRET_NAME, SecretString=json.dumps({"username": "demo", "password": "not-a-real-token"}))
    show("secret", f'{SECRET_NAME} (fake {{"username", "password"}}, never shown)')
    aws_client("ssm", ecr_url).put_parameter(Name=CONFIG_PARAMETER, Value=CONFIG, Type="String")
    show("SSM parameter", f"{CONFIG_PARAMETER}, the mirror list (cf. examples/mirror-config.yaml):")
    print("\n".join("     " + line for line in CONFIG.splitlines()))
    scheduled_env = {
        "AWS_ENDPOINT_URL": ecr_url,
        "ECR_MIRROR_CONFIG_PARAMETER": CONFIG_PARAMETER,
        "ECR_MIRROR_QUEUE_URL": queue_url,
        "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={proxy.url}",
    }
    os.environ.update(scheduled_env)
    print("   The functions' environment, in addition to step 3's:")
    for name, value in scheduled_env.items():
        print(f"   {name}={value}")

    from ecr_mirror.handlers import common, scheduler, warm, worker

    # Part 1's warm function kept a Mirror built without the config (and with the
    # old registry endpoint) in warm._mirror, which the worker shares, and
    # common._cache may hold a config: start part 2 like a fresh deployment.
    warm._mirror = None
    common._cache.clear()
    ecr = aws_client("ecr", ecr_url)

    def schedule(event_file: str) -> dict:
        return invoke(scheduler.handler, json.loads((ROOT / "events" / event_file).read_text()),
                      "ecr-mirror-scheduler")

    section(9, "A dry run of the scheduler",
            'scheduler.handler with events/dry-run.json ({"dryRun": true}): the plan, nothing queued.')
    proxy.reset_counts()
    dry = schedule("dry-run.json")
    show("plan", f"planned {dry['planned']}, to copy {dry['toCopy']}, unchanged {dry['unchanged']}, "
                 f"errors {dry['errors']}")
    for job in dry["jobs"]:
        print(f"     {job['source']:<33} -> {job['target']}")
    show("messages queued", f"{dry['queued']} (the queue holds {queue_depth(sqs, queue_url)})")
    show("source requests", f"{source_requests(proxy)}")
    print("   Planning lists tags only for the glob and the semver range, and reads each tag's")
    print("   digest with HEAD, which Docker Hub does not count as a pull.")
    if {job["target"] for job in dry["jobs"]} != SELECTED or dry["errors"] or dry["queued"]:
        raise DemoFailed(f"unexpected dry-run plan: {json.dumps(dry)}")

    section(10, "The scheduled run",
            "scheduler.handler with events/scheduled.json, the payload EventBridge Scheduler sends.")
    first = schedule("scheduled.json")
    show_summary(first)
    show("queue", f"{queue_depth(sqs, queue_url)} messages waiting, one per image")
    if (first["planned"], first["unchanged"], first["queued"]) != (len(SELECTED), 0, len(SELECTED)):
        raise DemoFailed(f"expected {len(SELECTED)} images queued: {json.dumps(first)}")

    section(11, "The worker drains the queue",
            f"As Lambda's SQS event source would: receive a batch (BatchSize {WORKER_BATCH_SIZE} in "
            "template.yaml:",
            "one image a call), call worker.handler with it, delete what it did not report failed.",
            "The digests below are read back from ECR with boto3; the other figures come from the",
            "worker's copy reports.")
    reports = drain(sqs, queue_url, worker)
    show_copies(ecr, reports, upstream)
    show("queue", f"{queue_depth(sqs, queue_url)} messages waiting")
    if {r["target"] for r in reports} != SELECTED:
        raise DemoFailed(f"the worker copied {sorted(r['target'] for r in reports)}")
    print("   The tags of redis, and of bitnami/app, share a base layer: once it is in the ECR")
    print("   repository, the next tag skips it.")

    section(12, "The next scheduled run: nothing to do",
            "Every upstream digest equals the one in ECR, so nothing is queued.")
    proxy.reset_counts()
    second = schedule("scheduled.json")
    show_summary(second)
    show("queue", f"{queue_depth(sqs, queue_url)} messages waiting")
    show("source requests", source_requests(proxy))
    print("   No manifest GET and no blob: the run cost no Docker Hub pull.")
    if (second["unchanged"], second["queued"]) != (len(SELECTED), 0) or proxy.counts["GET manifest"] \
            or proxy.counts["GET blob"]:
        raise DemoFailed(f"the second run should queue and pull nothing: {json.dumps(second)}, "
                         f"source {dict(proxy.counts)}")

    section(13, "An upstream tag moves",
            "A new image is pushed as library/redis:7.2.2 (a fixed layer on the same base).")
    moved_target = "mirror/dockerhub/library/redis:7.2.2"
    before = ecr_digest(ecr, moved_target)
    moved = images.make_image(registry.url, "library/redis", "7.2.2",
                              layers=[images.layer_bytes("library/redis base"),
                                      images.layer_bytes("library/redis 7.2.2, fixed")])
    upstream["library/redis:7.2.2"] = moved.digest
    show("redis:7.2.2 upstream", f"{moved.digest[:19]}… (was {before[:19]}…)")
    third = schedule("scheduled.json")
    show_summary(third)
    if (third["unchanged"], third["queued"]) != (len(SELECTED) - 1, 1):
        raise DemoFailed(f"expected exactly one image queued: {json.dumps(third)}")
    reports = drain(sqs, queue_url, worker)
    show_copies(ecr, reports, upstream)
    if [r["target"] for r in reports] != [moved_target]:
        raise DemoFailed(f"expected only {moved_target}, the worker copied "
                         f"{[r['target'] for r in reports]}")
    show("ECR redis:7.2.2", f"{ecr_digest(ecr, moved_target)[:19]}… (the new digest; was "
                            f"{before[:19]}…)")
    print("   Only the changed image moved, and of it only the new layer and config.")


def expect(report: dict, status: str) -> None:
    if report.get("status") != status:
        raise DemoFailed(f"expected status {status!r}, got {report.get('status')!r}: "
                         f"{json.dumps(report.get('error'))}")


def check_ecr(ecr_url: str, target: str, upstream: images.PushedImage, blobs: list[str]) -> None:
    repository, _, tag = target.rpartition(":")
    ecr = aws_client("ecr", ecr_url)
    answer = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                                 acceptedMediaTypes=MEDIA_TYPES)
    if answer.get("failures") or not answer.get("images"):
        raise DemoFailed(f"batch_get_image found nothing: {answer.get('failures')}")
    image = answer["images"][0]
    ecr_digest = image["imageId"]["imageDigest"]
    manifest_bytes = image["imageManifest"].encode()
    show("image", f"{repository}:{tag}")
    show("media type", image.get("imageManifestMediaType"))
    show("ECR digest", ecr_digest)
    show("upstream digest", upstream.digest)
    show("byte-for-byte", "yes" if manifest_bytes == upstream.raw else "NO")
    if ecr_digest != upstream.digest or manifest_bytes != upstream.raw:
        raise DemoFailed("the manifest in ECR differs from the upstream one")
    listed = ecr.list_images(repositoryName=repository)["imageIds"]
    show("manifests in repo", f"{len(listed)} (the index, tagged, plus {len(listed) - 1} children "
                              "by digest)")
    layers = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=blobs)
    available = [x for x in layers["layers"] if x.get("layerAvailability") == "AVAILABLE"]
    show("blobs available", f"{len(available)} of {len(blobs)}")
    if len(available) != len(blobs):
        raise DemoFailed(f"blobs missing in ECR: {layers.get('failures')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the Lambda's JSON log lines (INFO) too")
    args = parser.parse_args()

    # SIGTERM / SIGHUP clean up like Ctrl-C does.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)

    started = time.monotonic()
    print(f"{_BOLD}ecr-mirror demo{_RESET}: mirror images from a (local) Docker Hub into a (local) "
          "ECR with the real Lambda handlers:\n"
          "one image on demand (part 1), then the scheduled application (part 2).")
    stack = ExitStack()
    code = 0
    try:
        run(stack, args.verbose)
    except KeyboardInterrupt as exc:
        print("\n   Interrupted.", file=sys.stderr)
        code = 128 + (exc.args[0] if exc.args else signal.SIGINT)
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not leave processes or directories behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\n== Cleaning up: stopping the registry, the proxy and the ECR emulator, removing temp "
              "dirs ==",
              flush=True)
        stack.close()
    if code == 0:
        print(f"\n{_BOLD}Done in {time.monotonic() - started:.1f} s.{_RESET} Everything the demo "
              "started is stopped and its temporary files are gone.")
    sys.stdout.flush()
    if code > 128:
        # Threads of an interrupted copy may still be retrying against the stopped
        # servers; everything the demo started is gone, so do not wait for them.
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
