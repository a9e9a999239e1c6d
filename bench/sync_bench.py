"""Benchmark: a whole mirror set, ecr-mirror against skopeo sync and the floors.

    make bench                                        # the default: a ~2 GiB corpus, 3 runs
    .venv/bin/python bench/sync_bench.py --size 256MiB --runs 1      # a smoke run
    .venv/bin/python bench/sync_bench.py --publish    # also update README.md and docs/bench/

On one synthetic corpus (testing/ecr_mirror_testing/corpus.py) in a local distribution registry,
each run measures, in this order:

- ecr-mirror, cold (empty ECR) and warm (nothing changed): the real scheduler
  handler, then the real worker handler draining the SQS queue in as many
  processes as the template's default reserved concurrency, each one a Lambda
  instance (bench/lambda_runner.py); into the strict ECR emulator in its own
  process (moto also serves the queue, the config parameter and the blob
  lease table);
- `skopeo sync --all --preserve-digests` of the same tags into a second local
  distribution registry, cold (a new registry) and warm (the same one again);
- the floors (bench/floors.py): (a) every blob of the corpus fetched once and
  hashed, (b) the bytes ecr-mirror must upload (each blob once per repository)
  put into the same emulator with bare boto3 calls, both at the same number of
  blobs in flight as ecr-mirror's workers together;
  and, in this process, the CPU floor: sha256 and base64 of those bytes (and,
  for information, the sha256 of the base64 that SigV4 signs on top).

Every tool reaches the source through a counting proxy (testing/ecr_mirror_testing/proxy.py),
so requests by kind and the bytes read are counted the same way for all. Each
mirroring process's CPU and peak RSS come from os.wait4 (bench/rusage.py). The
medians of the runs are printed as a table, compared with the goals of the
issue, and written to bench/results/sync-<timestamp>.{json,md,png}. A missed
goal is reported, not an error; a wrong copy or a failed run exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, suppress
from pathlib import Path

from copy_big_layer import floor_cpu, start_emulator, tail  # bench/, this script's directory

from ecr_mirror_testing.benchgoals import goals, medians, summarize
from ecr_mirror_testing.corpus import Corpus, build_corpus, parse_size
from ecr_mirror_testing.ecr_server import reset as reset_emulator
from ecr_mirror_testing.proxy import SourceProxy, classify
from ecr_mirror_testing.registry import LocalRegistry

REPO = Path(__file__).resolve().parent.parent

MiB, GiB = 1 << 20, 1 << 30
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
REGION = "us-east-1"
PREFIX = "mirror"
CONFIG_PARAMETER = "/ecr-mirror/config"
QUEUE_NAME = "ecr-mirror-copy"
LEASE_TABLE = "ecr-mirror-leases"
MOUNTING_ROW = "ecr-mirror cold, mounting"
#: template.yaml's defaults: WorkerReservedConcurrency and ECR_MIRROR_CONCURRENCY.
DEFAULT_WORKERS, DEFAULT_CONCURRENCY = 2, 4
PART = 10 * MiB
SKOPEO_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'
ECR_MEDIA_TYPES = ["application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json",
                   "application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- measuring child processes ---------------------------------------------------------
def measured(cmds: list[tuple[str, list[str]]], env: dict, logdir: Path) -> list[dict]:
    """Start the commands together, each under bench/rusage.py; wait for all; return
    each one's exit status, wall time, CPU seconds and peak RSS."""
    procs = []
    try:
        for name, cmd in cmds:
            with open(logdir / f"{name}.out", "wb") as out, open(logdir / f"{name}.err", "wb") as err:
                procs.append(subprocess.Popen(
                    [PYTHON, "-S", str(REPO / "bench" / "rusage.py"), str(logdir / f"{name}.rusage"), *cmd],
                    env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True))  # a process group: killed whole on an error
        for proc in procs:
            proc.wait()
    except BaseException:
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        raise
    results = []
    for (name, _), proc in zip(cmds, procs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"{name} exited {proc.returncode}; its stderr:\n{tail(str(logdir / f'{name}.err'))}")
        results.append({"name": name, "stderr": str(logdir / f"{name}.err"),
                        **json.loads((logdir / f"{name}.rusage").read_text())})
    return results


def source_counts(proxy: SourceProxy) -> dict:
    """What the source saw: requests by kind, counted pulls, blob GETs, bytes read."""
    counts = Counter(proxy.counts)
    blob_gets = Counter()
    for method, path, _ in proxy.requests:
        kind, digest = classify(path)
        if method == "GET" and kind == "blob":
            repo = path.split("/blobs/")[0].removeprefix("/v2/")
            blob_gets[(repo, digest)] += 1
    return {"requests": dict(sorted(counts.items())),
            "pulls": counts["GET manifest"],  # what Docker Hub counts against the limit
            "blob_gets": counts["GET blob"],
            "blob_gets_repeated": sum(n - 1 for n in blob_gets.values() if n > 1),
            "repeated": [f"{repo}@{digest[:19]} x{n}" for (repo, digest), n in blob_gets.most_common(10) if n > 1],
            "bytes_read": proxy.bytes_out_total()}


# -- ecr-mirror ---------------------------------------------------------------------------
def aws_client(service: str, endpoint: str):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def lambda_env(ecr_url: str, source_url: str, queue_url: str, concurrency: int, scratch: Path,
               mount_url: str = "") -> dict:
    """The functions' environment (template.yaml), pointed at the local stand-ins."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ECR_MIRROR_", "POWERTOOLS_")) and not k.lower().endswith("_proxy")}
    env.update({
        "AWS_ENDPOINT_URL": ecr_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(scratch / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "none"),
        "ECR_MIRROR_PREFIX": PREFIX, "ECR_MIRROR_CONFIG_PARAMETER": CONFIG_PARAMETER,
        "ECR_MIRROR_QUEUE_URL": queue_url, "ECR_MIRROR_CONCURRENCY": str(concurrency),
        "ECR_MIRROR_LEASE_TABLE": LEASE_TABLE,
        "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={source_url}",
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror", "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
        "DOCKER_CONFIG": str(scratch / "none"), "NO_PROXY": "127.0.0.1,localhost",
        # BlobMounting: the template's parameter; the emulator's registry endpoint
        "ECR_MIRROR_BLOB_MOUNTING": "enabled" if mount_url else "disabled",
        "ECR_MIRROR_ECR_REGISTRY_ENDPOINT": mount_url,
    })
    return env


def ecr_mirror_sync(corpus: Corpus, ecr_url: str, proxy: SourceProxy, workers: int,
                    concurrency: int, cold: bool, scratch: Path, mount_url: str = "") -> dict:
    """One sync; with `mount_url`, blob mounting on (the account setting ENABLED)."""
    if cold:
        reset_emulator(ecr_url)
        aws_client("ecr", ecr_url).put_account_setting(
            name="BLOB_MOUNTING", value="ENABLED" if mount_url else "DISABLED")
        aws_client("ssm", ecr_url).put_parameter(Name=CONFIG_PARAMETER, Type="String",
                                                 Value=corpus.mirror_config(PREFIX))
        aws_client("dynamodb", ecr_url).create_table(  # the stack's LeaseTable
            TableName=LEASE_TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "lease", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "lease", "AttributeType": "S"}])
    queue_url = aws_client("sqs", ecr_url).create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    env = lambda_env(ecr_url, proxy.url, queue_url, concurrency, scratch, mount_url)
    runner = str(REPO / "bench" / "lambda_runner.py")
    proxy.reset_counts()
    started = time.monotonic()
    [scheduler] = measured([("scheduler", [PYTHON, runner, "scheduler", "--out",
                                            str(scratch / "scheduler.json")])], env, scratch)
    plan = json.loads((scratch / "scheduler.json").read_text())["answer"]
    # Lambda's event source invokes the worker only for messages, up to its reserved concurrency.
    instances = min(workers, plan.get("queued") or 0)
    drained = measured([(f"worker{i}", [PYTHON, runner, "worker", "--out",
                                        str(scratch / f"worker{i}.json")]) for i in range(instances)],
                       env, scratch)
    wall = time.monotonic() - started
    outputs = [json.loads((scratch / f"worker{i}.json").read_text()) for i in range(instances)]
    handled = [r for out in outputs for r in out["reports"]]
    # A handed-back image (another repository was uploading a layer it needs) is
    # deferred, then copied on a later delivery: its final report counts.
    reports = [r for r in handled if r.get("status") != "deferred"]
    handed_back = len(handled) - len(reports)
    failed = [body for out in outputs for body in out["failed"]]
    if (plan.get("errors") or failed or len(reports) != plan.get("queued")
            or any(r.get("status") not in ("copied", "unchanged") for r in reports)):
        logs = "\n".join(f"--- {p['name']}:\n{tail(p['stderr'])}" for p in drained)
        raise RuntimeError(f"ecr-mirror did not sync cleanly: plan {json.dumps(plan)[:2000]}, "
                           f"{len(reports)} images handled, failed "
                           f"{[r for r in reports if r.get('status') not in ('copied', 'unchanged')]}\n{logs}")
    processes = [scheduler, *drained]
    return {"wall_s": wall, "cpu_s": sum(p["cpu_s"] for p in processes),
            "max_rss_mib": max(p["max_rss_mib"] for p in processes),
            "processes": [{k: p[k] for k in ("name", "wall_s", "cpu_s", "user_s", "sys_s", "max_rss_mib")}
                          for p in processes],
            "queued": plan.get("queued"), "handed_back": handed_back,
            "images_copied": sum(r["status"] == "copied" for r in reports),
            "bytes_written": sum(r.get("bytesUploaded", 0) for r in reports),
            "bytes_mounted": sum(r.get("bytesMounted", 0) for r in reports),
            "blobs_mounted": sum(r.get("blobsMounted", 0) for r in reports),
            "api_calls": dict(sorted(sum((Counter(r.get("requests", {})) for r in reports), Counter()).items())),
            **source_counts(proxy)}


def check_ecr(corpus: Corpus, ecr_url: str) -> None:
    """Every tag of the corpus is in ECR with its upstream digest."""
    ecr = aws_client("ecr", ecr_url)
    wrong = []
    for image in corpus.images:
        repo = f"{PREFIX}/dockerhub/{image.repo}"
        answer = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": image.tag}],
                                     acceptedMediaTypes=ECR_MEDIA_TYPES)
        got = [i["imageId"]["imageDigest"] for i in answer.get("images", [])]
        if got != [image.digest]:
            wrong.append(f"{repo}:{image.tag}: {got or answer.get('failures')} != {image.digest}")
    if wrong:
        raise RuntimeError("ECR does not hold the corpus:\n" + "\n".join(wrong[:20]))


# -- skopeo ---------------------------------------------------------------------------------
def skopeo_version() -> str:
    out = subprocess.run(["skopeo", "--version"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()


def skopeo_repo(repo: str) -> str:
    """Where `skopeo sync` puts a repository: the destination + its last component
    (--scoped would add the source's host:port, which is no valid repository name)."""
    return f"{PREFIX}/{repo.rsplit('/', 1)[-1]}"


def skopeo_sync(corpus: Corpus, proxy: SourceProxy, target: SourceProxy, scratch: Path) -> dict:
    names = Counter(skopeo_repo(repo) for repo in corpus.repos())
    if max(names.values()) > 1:
        raise RuntimeError(f"skopeo sync would merge repositories into one: {names.most_common(3)}")
    (scratch / "skopeo.yaml").write_text(corpus.skopeo_sync_yaml(proxy.host))
    (scratch / "policy.json").write_text(SKOPEO_POLICY)
    env = {**{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
           "HOME": str(scratch), "XDG_RUNTIME_DIR": str(scratch), "NO_PROXY": "127.0.0.1,localhost"}
    cmd = ["skopeo", "--policy", str(scratch / "policy.json"), "sync", "--src", "yaml",
           "--dest", "docker", "--dest-tls-verify=false", "--all", "--preserve-digests",
           str(scratch / "skopeo.yaml"), f"{target.host}/{PREFIX}"]
    proxy.reset_counts()
    target.reset_counts()
    started = time.monotonic()
    [run] = measured([("skopeo", cmd)], env, scratch)
    wall = time.monotonic() - started
    return {"wall_s": wall, "cpu_s": run["cpu_s"], "max_rss_mib": run["max_rss_mib"],
            "bytes_written": target.bytes_in_total(), **source_counts(proxy)}


def check_registry(corpus: Corpus, target_url: str) -> None:
    """Every tag of the corpus is in the skopeo target with its upstream digest."""
    import requests

    wrong = []
    for image in corpus.images:
        resp = requests.head(f"{target_url}/v2/{skopeo_repo(image.repo)}/manifests/{image.tag}",
                             headers={"Accept": ", ".join(ECR_MEDIA_TYPES)}, timeout=30)
        got = resp.headers.get("Docker-Content-Digest")
        if got != image.digest:
            wrong.append(f"{image.repo}:{image.tag}: {resp.status_code} {got} != {image.digest}")
    if wrong:
        raise RuntimeError("skopeo's copy differs from the corpus:\n" + "\n".join(wrong[:20]))


# -- floors -----------------------------------------------------------------------------------
def floor_jobs(corpus: Corpus, source: LocalRegistry) -> tuple[list[dict], list[dict]]:
    """(every blob once, every blob once per repository it lands in), with its file on disk."""
    first_repo = {}
    for repo, blobs in corpus.repo_blobs().items():
        for digest in blobs:
            first_repo.setdefault(digest, repo)
    fetch = [{"repo": first_repo[d], "digest": d, "size": s, "path": str(source.blob_data_path(d))}
             for d, s in corpus.blob_sizes.items()]
    upload = [{"repo": f"floor/{repo}", "digest": d, "size": s, "path": str(source.blob_data_path(d))}
              for repo, blobs in corpus.repo_blobs().items() for d, s in blobs.items()]
    return fetch, upload


def floor_run(kind: str, jobs: list[dict], env: dict, concurrency: int, scratch: Path,
              source_url: str | None = None, proxy: SourceProxy | None = None) -> dict:
    (scratch / f"{kind}-jobs.json").write_text(json.dumps(jobs))
    cmd = [PYTHON, str(REPO / "bench" / "floors.py"), kind, "--jobs", str(scratch / f"{kind}-jobs.json"),
           "--out", str(scratch / f"{kind}.json"), "--concurrency", str(concurrency)]
    if source_url:
        cmd += ["--source", source_url]
    if proxy:
        proxy.reset_counts()
    started = time.monotonic()
    [run] = measured([(f"floor-{kind}", cmd)], env, scratch)
    wall = time.monotonic() - started
    out = json.loads((scratch / f"{kind}.json").read_text())
    result = {"wall_s": wall, "cpu_s": run["cpu_s"], "max_rss_mib": run["max_rss_mib"],
              "bytes": out["bytes"]}
    if proxy:
        result.update(source_counts(proxy))
    return result


# -- the run ---------------------------------------------------------------------------------
def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    mem = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem / GiB, 1),
            "arch": platform.machine(), "kernel": platform.release(), "python": platform.python_version(),
            "skopeo": skopeo_version(), "date": time.strftime("%Y-%m-%d"),
            "git": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                                  capture_output=True, text=True).stdout.strip()}


def bench(size: int, runs: int, workers: int, concurrency: int, seed: str, mounting: bool = True) -> dict:
    results: dict = {"machine": machine(), "size": size, "runs": runs, "workers": workers,
                     "concurrency": concurrency, "samples": {}}
    samples: dict[str, list[dict]] = results["samples"]
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-mirror-sync-bench-")))
        source = stack.enter_context(LocalRegistry())
        log(f"building a {size / GiB:.2f} GiB corpus in {source.url}")
        corpus = build_corpus(source, total_bytes=size, seed=seed)
        results["corpus"] = corpus.describe()
        log(f"corpus: {json.dumps(results['corpus'])}")
        proxy = stack.enter_context(SourceProxy(source.url))
        emulator, ecr_url = start_emulator(stack, str(scratch), "--mount")
        mount_url = emulator.stdout.readline().strip()  # its registry endpoint (blob mounts)
        fetch_jobs, upload_jobs = floor_jobs(corpus, source)
        results["blob_repo_pairs"] = len(upload_jobs)
        # The work a copier into ECR cannot avoid: sha256 + base64 of the bytes it uploads.
        results["cpu_floor"] = floor_cpu([Path(job["path"]) for job in upload_jobs])
        in_flight = workers * concurrency
        for run in range(1, runs + 1):
            def sample(name: str, value: dict, run: int = run) -> None:
                samples.setdefault(name, []).append(value)
                log(f"run {run}/{runs} {name}: {value['wall_s']:.1f} s wall, {value['cpu_s']:.1f} CPU s, "
                    f"peak RSS {value['max_rss_mib']:.0f} MiB"
                    + (f", source: {value['requests']}" if "requests" in value else ""))

            sample("ecr-mirror cold", ecr_mirror_sync(corpus, ecr_url, proxy, workers, concurrency, True, scratch))
            check_ecr(corpus, ecr_url)
            if mounting:  # the same cold run with ECR blob mounting on (then the warm run on top)
                sample(MOUNTING_ROW, ecr_mirror_sync(corpus, ecr_url, proxy, workers, concurrency, True,
                                                     scratch, mount_url))
                check_ecr(corpus, ecr_url)
            sample("ecr-mirror warm", ecr_mirror_sync(corpus, ecr_url, proxy, workers, concurrency, False, scratch))
            with LocalRegistry() as target_registry, SourceProxy(target_registry.url) as target:
                sample("skopeo cold", skopeo_sync(corpus, proxy, target, scratch))
                check_registry(corpus, target_registry.url)
                sample("skopeo warm", skopeo_sync(corpus, proxy, target, scratch))
            env = lambda_env(ecr_url, proxy.url, "", concurrency, scratch)
            sample("floor fetch", floor_run("fetch", fetch_jobs, env, in_flight, scratch,
                                            source_url=proxy.url, proxy=proxy))
            reset_emulator(ecr_url)
            sample("floor upload", floor_run("upload", upload_jobs, env, in_flight, scratch))
    results["medians"] = {name: medians(values) for name, values in samples.items()}
    summarize(results)
    results["goals"] = goals(results)
    results["goals_met"] = sum(g["met"] for g in results["goals"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2GiB", help="corpus size, distinct blob bytes (default 2GiB)")
    parser.add_argument("--runs", type=int, default=3, help="runs of everything; medians are reported")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="concurrent worker instances (the template's default reserved concurrency)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="blobs in flight per worker (ECR_MIRROR_CONCURRENCY)")
    parser.add_argument("--seed", default="ecr-mirror-bench")
    parser.add_argument("--mounting", choices=["both", "off"], default="both",
                        help="both: the cold run with ECR blob mounting off, then on (two rows); "
                             "off: without the mounting row")
    parser.add_argument("--publish", action="store_true",
                        help="also write the table and chart into README.md and docs/bench/")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    if args.runs < 1 or args.workers < 1 or args.concurrency < 1:
        parser.error("--runs, --workers and --concurrency must be at least 1")
    if not shutil.which("skopeo"):
        parser.error("skopeo not found: `make bench` installs the Debian package skopeo")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the clean-up runs
    results = bench(size, args.runs, args.workers, args.concurrency, args.seed,
                    mounting=args.mounting == "both")
    from report import publish, render  # matplotlib only once measured

    stem = REPO / "bench" / "results" / ("sync-" + time.strftime("%Y%m%d-%H%M%S"))
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results, stem.with_suffix(".png"))
    stem.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {stem.relative_to(REPO)}.{{json,md,png}}")
    if args.publish:
        publish(table, stem.with_suffix(".png"))
    print(f"goals met: {results['goals_met']} of {len(results['goals'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
