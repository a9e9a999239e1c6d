"""`make bench-scale`: a warm plan at scale, run by the real scheduler handler.

Two layouts, every tag already mirrored: `--tags` tags (default 10,000) in
`--repos` repositories (default 500; tiny images sharing their blobs), and one
repository of `--big` tags (default 5,000). The source is the distribution
registry behind the counting proxy, in a process of its own, `--latency`
(default 30 ms) added to every request; the target is the strict ECR emulator,
in its own process, every ECR call held `--ecr-latency` (default 20 ms). The
scheduler handler runs in this process (CPU is the planner's only; the proxy's,
the registry's and the emulator's are not in it), with the config in S3.

    PYTHONPATH=src:testing .venv/bin/python bench/scale.py [--tags 10000 --repos 500 --big 5000]
    PYTHONPATH=src:testing .venv/bin/python bench/scale.py --tags 1000 --repos 50 --big 0 --profile

Reported per layout: the handler's and the plan's wall and CPU, CPU per 1,000
tags, source requests by kind (from the proxy) and ECR calls by operation (from
the emulator), HEADs in flight at most, shards (the summary's `shards`, else 1),
and the floor: HEADs x latency / the plan's HEAD concurrency, or the ECR reads
x their latency / the entries planned at once when that is longer (they overlap
with the HEADs). Goals: CPU per 1,000 unchanged tags <= 1 s; plan wall <= 1.5x
the floor. A missed goal is reported, not an error; a plan that is not warm is.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import pstats
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import boto3
from copy_big_layer import start_emulator  # bench/, this script's directory

from ecr_mirror_testing import ecr_server
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.inflight import pool_occupancy, process_cpu
from ecr_mirror_testing.lambdas import FakeContext
from ecr_mirror_testing.proxy import SourceProxy
from ecr_mirror_testing.registry import LocalRegistry

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
REGION = "us-east-1"
BUCKET, KEY = "ecr-mirror-config", "mirror.json"
PREFIX = "mirror"
GOAL_CPU_PER_1000 = 1.0  # seconds
GOAL_WALL_OVER_FLOOR = 1.5
#: The registry (Go) collects garbage less often, on one core: half its CPU per HEAD
#: (2.5 ms with Go's defaults), on the cores the planner shares with it. Its answers
#: and the latency the proxy adds are the same.
REGISTRY_ENV = {"GOGC": "400", "GOMAXPROCS": "1"}


# -- the source: registry, proxy ------------------------------------------------------
def serve_proxy(upstream: str, latency: float, commands, answers) -> None:
    """The proxy in a process of its own (its CPU is not the planner's), answering
    "counts" (and forgetting them) from the bench."""
    proxy = SourceProxy(upstream, keep_upstream=True).start()
    proxy.delay = latency
    spans: list[tuple[float, float]] = []  # (entered, left) of every HEAD, on the shared monotonic clock
    enter, leave = proxy._enter, proxy._leave
    entered = threading.local()

    def timed_enter(key: str) -> None:
        entered.at = time.monotonic()
        enter(key)

    def timed_leave(key: str) -> None:
        leave(key)
        if key == "HEAD manifest":
            spans.append((entered.at, time.monotonic()))

    proxy._enter, proxy._leave = timed_enter, timed_leave  # type: ignore[method-assign]
    answers.put((proxy.host, os.getpid()))
    while True:
        commands.get()
        answers.put({"counts": dict(proxy.counts), "peak": dict(proxy.peak), "spans": list(spans)})
        spans.clear()
        proxy.reset_counts()


def tag_in_storage(registry: LocalRegistry, repo: str, tag: str, digest: str) -> None:
    """Tag a pushed manifest by writing the registry's own tag links (thousands of
    tags in a second, where as many manifest PUTs take minutes on 2 cores)."""
    tags = registry.root / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
    hexpart = digest.partition(":")[2]
    for link in (tags / "current/link", tags / "index/sha256" / hexpart / "link"):
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(digest)


def seed_source(registry: LocalRegistry, entries: list[tuple[str, list[str]]]) -> dict[str, object]:
    """One tiny image per repository (the same layer everywhere), every tag on it."""
    shared = layer_bytes("scale", 512)

    def one(entry: tuple[str, list[str]]):
        repo, tags = entry
        image = make_image(registry.url, repo, tags[0], layers=[shared])
        for tag in tags[1:]:
            tag_in_storage(registry, repo, tag, image.digest)
        return image

    with ThreadPoolExecutor(8) as pool:
        return dict(zip([repo for repo, _ in entries], pool.map(one, entries), strict=True))


# -- the target: ECR, already holding everything ------------------------------------------
def seed_ecr(ecr, registry: LocalRegistry, entries, images) -> None:
    """Each repository's few blobs uploaded, then its manifest put under every tag."""
    def upload(repository: str, digest: str, data: bytes) -> None:
        upload_id = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        ecr.upload_layer_part(repositoryName=repository, uploadId=upload_id, partFirstByte=0,
                              partLastByte=len(data) - 1, layerPartBlob=data)
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])

    def repository(entry) -> list[tuple[str, str, str, str]]:
        repo, tags = entry
        name, image = f"{PREFIX}/{repo}", images[repo]
        ecr.create_repository(repositoryName=name)
        for digest in image.blobs:
            upload(name, digest, registry.blob_data_path(digest).read_bytes())
        return [(name, image.raw.decode(), image.media_type, tag) for tag in tags]

    def put(item: tuple[str, str, str, str]) -> None:
        name, manifest, media_type, tag = item
        ecr.put_image(repositoryName=name, imageManifest=manifest, imageManifestMediaType=media_type,
                      imageTag=tag)

    with ThreadPoolExecutor(32) as pool:
        puts = [item for items in pool.map(repository, entries) for item in items]
        list(pool.map(put, puts, chunksize=64))


# -- one scheduler run ---------------------------------------------------------------------
@contextmanager
def profiled(path: Path | None):
    """cProfile of every thread started inside (the plan's pools), merged into `path`."""
    if path is None:
        yield
        return
    profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def run(self) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU, not waits
        profiles.append(profile)
        profile.runcall(original, self)

    main = cProfile.Profile(time.thread_time)
    threading.Thread.run = run  # type: ignore[method-assign]
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.Thread.run = original  # type: ignore[method-assign]
        stats = pstats.Stats(main)
        for profile in profiles:
            stats.add(profile)
        stats.dump_stats(str(path))
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)


def run_scheduler(profile: Path | None) -> dict:
    from ecr_mirror.handlers import scheduler

    timing: dict[str, float] = {}
    original = scheduler.build_plan

    def timed(config, mirror):
        started, cpu = time.monotonic(), time.process_time()
        try:
            return original(config, mirror)
        finally:
            timing.update(planWallS=time.monotonic() - started, planCpuS=time.process_time() - cpu,
                          planStarted=started, planEnded=time.monotonic())

    scheduler.build_plan = timed
    try:
        started, cpu = time.monotonic(), time.process_time()
        with profiled(profile):
            answer = scheduler.handler({}, FakeContext())
        timing.update(handlerWallS=time.monotonic() - started, handlerCpuS=time.process_time() - cpu)
    finally:
        scheduler.build_plan = original
    return {"answer": answer, **timing}


def function_env(ecr_url: str, proxy_host: str, queue_url: str, scratch: str) -> dict[str, str]:
    """The scheduler's environment (template.yaml's), pointed at the local stand-ins."""
    return {
        "AWS_ENDPOINT_URL": ecr_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(scratch, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(scratch, "none"),
        "ECR_MIRROR_PREFIX": PREFIX, "ECR_MIRROR_CONFIG_OBJECT": f"s3://{BUCKET}/{KEY}",
        "ECR_MIRROR_QUEUE_URL": queue_url, "ECR_MIRROR_INSECURE_REGISTRIES": proxy_host,
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror", "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
        "DOCKER_CONFIG": os.path.join(scratch, "none"), "NO_PROXY": "127.0.0.1,localhost",
    }


def floor_of(heads: int, ecr_reads: int, latency: float, ecr_latency: float) -> tuple[float, int]:
    """(floor seconds, HEAD concurrency): HEADs in the registry's pool, ECR reads
    by the entries planned at once, the two overlapped."""
    from ecr_mirror.settings import MirrorSettings

    concurrency = MirrorSettings.from_env().plan_concurrency
    return max(heads * latency, ecr_reads * ecr_latency) / concurrency, concurrency


def measure(name: str, entries, host: str, s3, ecr_url: str, commands, answers, args,
            profile: Path | None, pids: dict[str, int]) -> dict:
    tags = sum(len(t) for _, t in entries)
    # The proxy speaks plain HTTP: said in the config, so the client does not first
    # try HTTPS on it (a registry marked insecure is probed; ~0.5 s before the first
    # HEAD that a real registry, HTTPS, does not cost).
    config = {"registries": {host: {"endpoint": f"http://{host}"}},
              "images": [{"source": f"{host}/{repo}", "target": f"{PREFIX}/{repo}", "tags": t}
                         for repo, t in entries]}
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(config).encode())
    commands.put("counts")
    answers.get(timeout=30)  # forget the seeding's requests
    ecr_server.calls(ecr_url, reset=True)
    before = {name: process_cpu(pid) for name, pid in pids.items()}
    run = run_scheduler(profile)
    cpu = {name: round(process_cpu(pid) - before[name], 2) for name, pid in pids.items()}
    commands.put("counts")
    proxy = answers.get(timeout=30)
    pool = pool_occupancy(proxy.pop("spans"), run.pop("planStarted"), run.pop("planEnded"))
    ecr_calls = ecr_server.calls(ecr_url, reset=True)
    answer = run["answer"]
    if answer.get("toCopy") or answer.get("errors") or answer.get("unchanged") != tags:
        raise RuntimeError(f"{name}: not a warm plan: {json.dumps(answer)[:600]}")
    counts = proxy["counts"]
    heads = counts.get("HEAD manifest", 0)
    reads = ecr_calls.get("BatchGetImage", 0)
    floor, concurrency = floor_of(heads, reads, args.latency, args.ecr_latency)
    cpu_per_1000 = 1000 * run["planCpuS"] / tags
    return {
        "layout": name, "tags": tags, "repositories": len(entries), "shards": answer.get("shards", 1),
        **{k: round(v, 3) for k, v in run.items() if k.endswith(("WallS", "CpuS"))},
        "planCpuSPer1000Tags": round(cpu_per_1000, 3),
        "floorS": round(floor, 2), "headConcurrency": concurrency,
        "wallOverFloor": round(run["planWallS"] / floor, 2) if floor else None,
        "sourceRequests": counts, "headsInFlightPeak": proxy["peak"].get("HEAD manifest", 0),
        "ecrCalls": ecr_calls, "headPool": pool,
        "cpuByProcessS": cpu, "cpuOverWall": round(sum(cpu.values()) / run["handlerWallS"], 2),
        "goals": {"cpuPer1000TagsAtMost1s": cpu_per_1000 <= GOAL_CPU_PER_1000,
                  "wallAtMost1.5xFloor": bool(floor) and run["planWallS"] <= GOAL_WALL_OVER_FLOOR * floor},
    }


def layouts(args) -> dict[str, list[tuple[str, list[str]]]]:
    chosen: dict[str, list[tuple[str, list[str]]]] = {}
    if args.tags and args.repos:
        per = max(1, args.tags // args.repos)
        chosen[f"{args.repos} repositories x {per} tags"] = [
            (f"scale/r{i}", [f"v{j}" for j in range(per)]) for i in range(args.repos)]
    if args.big:
        chosen[f"1 repository x {args.big} tags"] = [("scale/big", [f"v{j}" for j in range(args.big)])]
    return chosen


def run(args) -> list[dict]:
    results = []
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-mirror-scale-"))
        registry = stack.enter_context(LocalRegistry(env=REGISTRY_ENV))
        emulator, ecr_url = start_emulator(stack, scratch, "--delay", str(args.ecr_latency))
        commands, answers = multiprocessing.Queue(), multiprocessing.Queue()
        server = multiprocessing.Process(target=serve_proxy, args=(registry.url, args.latency, commands,
                                                                   answers), daemon=True)
        server.start()
        stack.callback(server.terminate)
        host, proxy_pid = answers.get(timeout=30)
        pids = {"planner": os.getpid(), "proxy": proxy_pid, "emulator": emulator.pid}
        if registry.proc is not None:
            pids["registry"] = registry.proc.pid
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        ecr = session.client("ecr", endpoint_url=ecr_url,
                             config=boto3.session.Config(max_pool_connections=32))
        s3 = session.client("s3", endpoint_url=ecr_url)
        s3.create_bucket(Bucket=BUCKET)
        queue_url = session.client("sqs", endpoint_url=ecr_url).create_queue(QueueName="scale")["QueueUrl"]
        os.environ.update(function_env(ecr_url, host, queue_url, scratch))
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name, entries in layouts(args).items():
            started = time.monotonic()
            images = seed_source(registry, entries)
            seed_ecr(ecr, registry, entries, images)
            print(f"{name}: seeded in {time.monotonic() - started:.0f} s", file=sys.stderr)
            profile = RESULTS / f"scale-{name.replace(' ', '')}.prof" if args.profile else None
            results.append(measure(name, entries, host, s3, ecr_url, commands, answers, args, profile,
                                   pids))
            print(json.dumps(results[-1]), file=sys.stderr)
    return results


def table(results: list[dict], args) -> str:
    lines = [f"Latency: {args.latency * 1000:g} ms per registry request, {args.ecr_latency * 1000:g} ms "
             "per ECR call. Goals: plan CPU per 1,000 unchanged tags <= 1 s; plan wall <= 1.5x floor.", "",
             "| layout | shards | plan wall | floor | wall/floor | plan CPU | CPU per 1,000 tags "
             "| source requests | ECR calls | HEADs in flight (peak / mean) | CPU by process "
             "| goals met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        source = ", ".join(f"{k}: {v}" for k, v in sorted(r["sourceRequests"].items()))
        ecr = ", ".join(f"{k}: {v}" for k, v in sorted(r["ecrCalls"].items()))
        cpu = ", ".join(f"{k} {v:.1f} s" for k, v in r["cpuByProcessS"].items())
        met = "yes" if all(r["goals"].values()) else \
            "no: " + ", ".join(k for k, v in r["goals"].items() if not v)
        lines.append(f"| {r['layout']} | {r['shards']} | {r['planWallS']:.2f} s | {r['floorS']:.2f} s "
                     f"| {r['wallOverFloor']}x | {r['planCpuS']:.2f} s | {r['planCpuSPer1000Tags']:.2f} s "
                     f"| {source} | {ecr} | {r['headsInFlightPeak']} / {r['headPool'].get('meanInFlight')} "
                     f"| {cpu} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=10_000, help="tags of the many-repository layout")
    parser.add_argument("--repos", type=int, default=500, help="its repositories (0: skip it)")
    parser.add_argument("--big", type=int, default=5_000, help="tags of the one-repository layout (0: skip)")
    parser.add_argument("--latency", type=float, default=0.030, help="seconds per registry request")
    parser.add_argument("--ecr-latency", type=float, default=0.020, help="seconds per ECR call")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the scheduler (all threads) into bench/results/scale-*.prof")
    args = parser.parse_args(argv)
    results = run(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"scale-{stamp}.json").write_text(json.dumps(results, indent=2))
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
