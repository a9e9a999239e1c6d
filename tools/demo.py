#!/usr/bin/env python3
"""A guided tour of ecr-mirror, entirely on this machine (`make demo`).

What it does, step by step:

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

Only 127.0.0.1 is contacted, no AWS account or Docker is needed, and every
process and temporary directory is removed at the end, also on Ctrl-C.

    .venv/bin/python tools/demo.py            # from the repository root
    .venv/bin/python tools/demo.py --verbose  # also show the Lambda's JSON logs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that `tests.support` imports
if str(ROOT / "src") not in sys.path:
    sys.path.insert(1, str(ROOT / "src"))  # works even without `pip install -e .`

from tests.support import images  # noqa: E402
from tests.support.registry import LocalRegistry  # noqa: E402

MiB = 1 << 20
SOURCE_REPO, SOURCE_TAG = "library/nginx", "stable"  # what "nginx:stable" means on Docker Hub
PLATFORMS = [("linux", "amd64", None), ("linux", "arm64", "v8")]
BIG_LAYER_SIZE = 12 * MiB  # bigger than ECR's 10 MiB upload part: a multi-part upload
SMALL_LAYER_SIZE = 96 * 1024
EMULATOR_START_TIMEOUT = 60.0
REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


# -- printing ------------------------------------------------------------------
_BOLD = "\033[1m" if sys.stdout.isatty() and os.environ.get("NO_COLOR") is None else ""
_RESET = "\033[0m" if _BOLD else ""


def section(number: int, title: str, *explanation: str) -> None:
    print(f"\n{_BOLD}== {number}. {title} =={_RESET}", flush=True)
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
    """Run `python -m tests.support.ecr_server --port 0`; return its endpoint URL.

    The emulator prints its URL on the first line of stdout once it accepts
    requests. Its stderr goes to a log file, shown if it fails to start.
    """
    log_path = workdir / "ecr-emulator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.ecr_server", "--port", "0"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            process_group=0,  # it installs its own SIGINT handler: keep it out of the terminal's group
        )
    stack.callback(stop_process, proc)

    first_line: list[bytes] = []
    reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(EMULATOR_START_TIMEOUT)
    url = first_line[0].decode().strip() if first_line else ""
    if not url.startswith("http://127.0.0.1:"):
        stop_process(proc)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise DemoFailed(f"the ECR emulator did not start (got {url!r}); its log:\n{tail}")
    return url


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s; idempotent."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


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
    })
    return lambda_env


class FakeLambdaContext:
    """The attributes of the Lambda context object that the handler's logger reads."""

    function_name = "ecr-mirror-copy-one"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:ecr-mirror-copy-one"
    log_group_name = "/aws/lambda/ecr-mirror-copy-one"
    log_stream_name = "demo"

    def __init__(self, timeout_seconds: int = 900) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def invoke(handler, event: dict) -> dict:
    """Call `handler(event, context)` as the Lambda runtime would; return its answer.

    The call runs in a helper thread and the main thread only waits, so a Ctrl-C
    is handled at once: the demo then stops its servers and exits, instead of
    waiting for the copy's upload threads to finish or give up.
    """
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["answer"] = handler(event, FakeLambdaContext())
        except BaseException as exc:  # handed to the main thread below
            outcome["error"] = exc

    thread = threading.Thread(target=call, name="lambda-invocation", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["answer"]


# -- the tour ----------------------------------------------------------------------
def run(stack: ExitStack, verbose: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ecr-mirror-demo-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)

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
    big_layer = images.layer_bytes("demo: shared base layer", BIG_LAYER_SIZE)
    upstream = images.make_index(
        registry.url, SOURCE_REPO, SOURCE_TAG, platforms=PLATFORMS, oci=True, attestations=True,
        layers_per_image=2, layer_size=SMALL_LAYER_SIZE, shared_base=big_layer)
    blobs = upstream.all_blobs()
    blob_bytes = len(big_layer) + 2 * len(PLATFORMS) * SMALL_LAYER_SIZE  # layers only, roughly
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
            "(python -m tests.support.ecr_server --port 0).")
    ecr_url = start_ecr_emulator(stack, workdir)
    show("ECR endpoint", ecr_url)

    section(3, "The Lambda function's environment",
            "Set before the handler is imported. ECR_MIRROR_REGISTRY_ENDPOINTS sends requests",
            'for docker.io (where "nginx:stable" lives) to the local registry instead.')
    for name, value in set_lambda_environment(ecr_url, registry.url, workdir, verbose).items():
        print(f"   {name}={value}")

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
    if first["source_digest"] != upstream.digest or first["target_digest"] != upstream.digest:
        raise DemoFailed(f"digests differ: upstream {upstream.digest}, report source "
                         f"{first['source_digest']}, target {first['target_digest']}")
    print("   In short:")
    show("status", first["status"])
    show("same digest", "yes: source digest == target digest == upstream digest")
    show("blobs uploaded", f"{first['blobs_uploaded']} ({size(first['bytes_uploaded'])}), "
                           f"{first['blobs_skipped']} skipped")
    parts = first["requests"].get("ecr:UploadLayerPart", 0)
    show("upload parts", f"{parts} for {first['blobs_uploaded']} blobs (the {size(BIG_LAYER_SIZE)} "
                         "layer is bigger than one ECR upload part)")
    show("manifests put", f"{first['manifests_put']} ({len(upstream.children)} children by digest, "
                          "then the tagged index)")
    show("manifests fetched", f"{first['manifests_fetched']} (the pulls Docker Hub would count)")

    section(5, "Invoke it again",
            "Upstream has not changed, so the function only compares digests: no blob moves",
            "and no manifest is pulled (the warm function reuses its clients, as on Lambda).")
    second = invoke(handler, event)
    expect(second, "unchanged")
    show("status", second["status"])
    show("target digest", second["target_digest"])
    show("blobs uploaded", second["blobs_uploaded"])
    show("manifests fetched", second["manifests_fetched"])
    show("requests", ", ".join(f"{k}={v}" for k, v in sorted(second["requests"].items())) or "-")
    show("took", f"{second['duration_seconds']:.2f} s")
    if second["manifests_fetched"] != 0 or second["blobs_uploaded"] != 0:
        raise DemoFailed("the second run should fetch no manifest and upload no blob")

    section(6, "What is in ECR now",
            "Plain boto3 against the emulator: batch_get_image on mirror/nginx:stable.")
    check_ecr(ecr_url, first["target"], upstream, blobs)


def expect(report: dict, status: str) -> None:
    if report.get("status") != status:
        raise DemoFailed(f"expected status {status!r}, got {report.get('status')!r}: "
                         f"{json.dumps(report.get('error'))}")


def check_ecr(ecr_url: str, target: str, upstream: images.PushedImage, blobs: list[str]) -> None:
    import boto3

    repository, _, tag = target.rpartition(":")
    ecr = boto3.client("ecr", endpoint_url=ecr_url, region_name=REGION,
                       aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    answer = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                                 acceptedMediaTypes=[images.OCI_INDEX, images.DOCKER_MANIFEST_LIST,
                                                     images.OCI_MANIFEST, images.DOCKER_MANIFEST])
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
    print(f"{_BOLD}ecr-mirror demo{_RESET}: mirror nginx:stable from a (local) Docker Hub into a "
          "(local) ECR with the real Lambda handler.")
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
        print("\n== Cleaning up: stopping the registry and the ECR emulator, removing temp dirs ==",
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
