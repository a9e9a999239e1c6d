"""Planning at scale: wall and CPU of a warm plan (every tag already mirrored).

Two layouts of `--tags` tags (default 1,000): one repository holding them all,
and as many one-tag repositories. The source is the real distribution registry
behind the counting proxy, run in its own process with `--latency` (default
30 ms) added to every request; the target is the strict ECR emulator (no latency
injected there). CPU is this process's (the planner's) only.

    PYTHONPATH=src:testing .venv/bin/python bench/plan_scale.py [--tags 1000]

Run it against another checkout's src (PYTHONPATH=/other/src:testing) for a
before/after comparison: nothing here depends on the planner's internals.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from copy_big_layer import start_emulator  # bench/, this script's directory

from ecr_mirror import aws
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.sync import build_plan, load_config
from ecr_mirror_testing.images import layer_bytes, make_image, push_manifest
from ecr_mirror_testing.proxy import SourceProxy
from ecr_mirror_testing.registry import LocalRegistry


def serve_proxy(upstream: str, latency: float, answer) -> None:
    """The proxy in a process of its own, so its CPU is not the planner's."""
    proxy = SourceProxy(upstream).start()
    proxy.delay = latency
    answer.put(proxy.host)
    while True:
        time.sleep(3600)


def layouts(registry: LocalRegistry, tags: int) -> dict[str, list[tuple[str, list[str]]]]:
    image = make_image(registry.url, "one/all", "t0", layers=[layer_bytes("one", 256)])
    for i in range(1, tags):
        push_manifest(registry.url, "one/all", f"t{i}", image.raw, image.media_type)

    def single(i: int) -> tuple[str, list[str]]:
        make_image(registry.url, f"many/r{i}", "t0", layers=[layer_bytes("one", 256)])
        return f"many/r{i}", ["t0"]

    with ThreadPoolExecutor(8) as pool:
        many = list(pool.map(single, range(tags)))
    return {f"1 repository x {tags} tags": [("one/all", [f"t{i}" for i in range(tags)])],
            f"{tags} repositories x 1 tag": many}


def config_for(host: str, entries: list[tuple[str, list[str]]]):
    return load_config(json.dumps({"images": [
        {"source": f"{host}/{repo}", "target": f"mirror/{repo}", "tags": tags} for repo, tags in entries]}))


def run(tags: int, latency: float) -> dict:
    results: dict = {}
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-mirror-plan-bench-"))
        registry = stack.enter_context(LocalRegistry())
        _, ecr_url = start_emulator(stack, scratch)
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_url})
        built = layouts(registry, tags)
        answer: multiprocessing.Queue = multiprocessing.Queue()
        server = multiprocessing.Process(target=serve_proxy, args=(registry.url, latency, answer),
                                         daemon=True)
        server.start()
        stack.callback(server.terminate)
        host = answer.get(timeout=30)
        settings = MirrorSettings(prefix="mirror", region="us-east-1",
                                  registries={host: SourceRegistry(insecure=True)})
        mirror = Mirror(settings, ecr_client=aws.client("ecr", "us-east-1"))
        for name, entries in built.items():
            # Mirror everything first (the image once per repository, then its tags).
            config = config_for(host, entries)
            with ThreadPoolExecutor(8) as pool:
                reports = list(pool.map(lambda e: mirror.copy(f"{host}/{e[0]}:{e[1][0]}", f"mirror/{e[0]}:{e[1][0]}"),
                                        entries))
            assert all(r.status == "copied" for r in reports), reports[:1]
            ecr = aws.client("ecr", "us-east-1")
            for repo, repo_tags in entries:
                held = ecr.batch_get_image(repositoryName=f"mirror/{repo}", imageIds=[{"imageTag": repo_tags[0]}])
                manifest = held["images"][0]["imageManifest"]
                for tag in repo_tags[1:]:
                    ecr.put_image(repositoryName=f"mirror/{repo}", imageManifest=manifest, imageTag=tag)
            started, cpu = time.monotonic(), time.process_time()
            plan = build_plan(config, mirror)
            wall, cpu = time.monotonic() - started, time.process_time() - cpu
            if plan.jobs or plan.errors:
                raise RuntimeError(f"{name}: not warm: {plan.summary()} {plan.errors[:2]}")
            results[name] = {"unchanged": len(plan.unchanged), "planWallS": round(wall, 2),
                             "planCpuS": round(cpu, 2), "cpuMsPerTag": round(1000 * cpu / tags, 2),
                             "floorS": round(tags * latency / getattr(settings, "plan_concurrency", 4), 2)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.030, help="seconds per registry request")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.tags, args.latency), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
