"""The warm run with referrers on: still 0 counted pulls.

Builds the benchmark corpus (testing/ecr_mirror_testing/corpus.py, small by
default) in a local distribution registry and gives every tag referrers of
both kinds: an SBOM through the referrers API (the source is
`ReferrersProxy`, our server of that API in front of the registry, which has
none) and, in the fallback tag schema, an SBOM listed by the `sha256-<hex>`
index, a signature of that SBOM (its own fallback index) and cosign's legacy
`.sig` tag. Then, with the engine in this process and the strict ECR emulator
in another:

1. cold: every tag copied with referrers on;
2. warm plan: the planner (with referrers on for every entry) queues nothing;
3. warm copy: every tag copied again, as a worker would if it were queued.

The counts come from the proxy in front of the source. The scheduler and
worker handlers are not used: the config key and the queue message for
referrers are another change (issue 12, "plumbing"); the engine and the planner
they call are the ones measured here.

    .venv/bin/python bench/referrers_warm.py [--size 128MiB]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace

from copy_big_layer import start_emulator  # bench/, this script's directory

from ecr_mirror import aws
from ecr_mirror.copy.options import ReferrerPolicy
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.sync import build_plan, load_config
from ecr_mirror_testing.artifacts import make_artifact, make_sbom, push_fallback_index, subject_tag
from ecr_mirror_testing.corpus import build_corpus, parse_size
from ecr_mirror_testing.images import OCI_CONFIG, PushedImage, get_manifest
from ecr_mirror_testing.referrers_api import ReferrersProxy
from ecr_mirror_testing.registry import LocalRegistry

ALL = ReferrerPolicy()
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def attach(proxy_url: str, registry_url: str, repo: str, digest: str, media_type: str) -> int:
    """Referrers of every kind for one tag; returns how many manifests were attached."""
    raw = get_manifest(registry_url, repo, digest).content
    subject = PushedImage(repo=repo, ref=digest, digest=digest, raw=raw, media_type=media_type)
    make_sbom(proxy_url, repo, subject, seed="api")  # through the proxy: listed by its API
    sbom = make_sbom(registry_url, repo, subject, seed="fallback")
    push_fallback_index(registry_url, repo, digest, [sbom])
    layer = (SIMPLESIGNING, digest.encode(), {"dev.cosignproject.cosign/signature": "fake"})
    signed = make_artifact(registry_url, repo, None, artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
                           layers=[layer], subject=sbom)
    push_fallback_index(registry_url, repo, sbom.digest, [signed])
    make_artifact(registry_url, repo, subject_tag(digest, ".sig"), artifact_type=None, config_type=OCI_CONFIG,
                  config=b"{}", layers=[layer])
    return 6


def pulls(proxy: ReferrersProxy) -> dict:
    return {"countedPulls": proxy.counts["GET manifest"],
            "requests": dict(sorted((k, v) for k, v in proxy.counts.items() if v))}


def run(size: int) -> dict:
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-mirror-referrers-bench-"))
        registry = stack.enter_context(LocalRegistry())
        corpus = build_corpus(registry, total_bytes=size)
        proxy = stack.enter_context(ReferrersProxy(registry.url))
        attached = sum(attach(proxy.url, registry.url, i.repo, i.digest, i.media_type) for i in corpus.images)
        _, ecr_url = start_emulator(stack, scratch)
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_url})
        settings = MirrorSettings(prefix="mirror", region="us-east-1",
                                  registries={proxy.host: SourceRegistry(insecure=True)})
        mirror = Mirror(settings, ecr_client=aws.client("ecr", "us-east-1"))
        results: dict = {"corpus": corpus.describe(), "referrersAttached": attached}

        def copy_all(name: str, expected: str) -> None:
            proxy.reset_counts()
            started = time.monotonic()
            reports = [mirror.copy(f"{proxy.host}/{i.repo}:{i.tag}", f"mirror/{i.repo}:{i.tag}", referrers=ALL)
                       for i in corpus.images]
            wrong = [r.summary() for r in reports if r.status != expected]
            if wrong:
                raise RuntimeError(f"{name}: {wrong[:3]}")
            results[name] = {**pulls(proxy), "seconds": round(time.monotonic() - started, 1),
                             "referrersCopied": sum(r.referrers_copied for r in reports),
                             "referrersUnchanged": sum(r.referrers_unchanged for r in reports)}

        copy_all("cold", "copied")
        config = load_config(json.dumps({"images": [{"source": f"{proxy.host}/{repo}", "target": f"mirror/{repo}",
                                                     "tags": corpus.tags(repo)} for repo in corpus.repos()]}))
        config.images = [replace(e, referrers=ALL) for e in config.images]
        proxy.reset_counts()
        plan = build_plan(config, mirror)
        if plan.jobs or plan.errors:
            raise RuntimeError(f"warm plan: {plan.summary()} {plan.errors[:3]}")
        results["warm plan"] = {**pulls(proxy), "queued": len(plan.jobs), "unchanged": len(plan.unchanged)}
        copy_all("warm copy", "unchanged")
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="128MiB", help="corpus size, distinct blob bytes")
    results = run(parse_size(parser.parse_args(argv).size))
    print(json.dumps(results, indent=2))
    warm = results["warm plan"]["countedPulls"] + results["warm copy"]["countedPulls"]
    print(f"warm run with referrers: {warm} counted pulls")
    return 0 if warm == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
