"""The floors of bench/sync_bench.py: the work no copier can avoid, done plainly.

    python bench/floors.py fetch  --jobs FILE --out FILE --source URL --concurrency N
    python bench/floors.py upload --jobs FILE --out FILE --concurrency N   (AWS_ENDPOINT_URL: the emulator)

`fetch`: GET every blob of the corpus once from the source registry and hash it
(sha256, checked against the digest). `upload`: put the same bytes, read from the
registry's storage on disk, into the ECR emulator with bare boto3 calls
(InitiateLayerUpload, UploadLayerPart per part, CompleteLayerUpload), once for
every repository a blob lands in, as any copier into ECR must (ECR has no
cross-repository mount). Both keep `concurrency` blobs in flight. The jobs file
is a JSON list of {"repo", "digest", "size", "path"}. Each writes a small JSON
result; the parent measures the process (os.wait4).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import local

MiB = 1 << 20


def fetch(jobs: list[dict], source: str, concurrency: int) -> dict:
    import requests

    sessions = local()

    def one(job: dict) -> int:
        session = getattr(sessions, "session", None)
        if session is None:
            session = sessions.session = requests.Session()
        h, n = hashlib.sha256(), 0
        with session.get(f"{source}/v2/{job['repo']}/blobs/{job['digest']}", stream=True,
                         timeout=60) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_content(MiB):
                h.update(chunk)
                n += len(chunk)
        if "sha256:" + h.hexdigest() != job["digest"]:
            raise RuntimeError(f"{job['repo']}@{job['digest']}: the bytes fetched hash differently")
        return n

    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(one, sorted(jobs, key=lambda j: -j["size"])))
    return {"blobs": len(jobs), "bytes": total}


def upload(jobs: list[dict], concurrency: int) -> dict:
    import boto3
    from botocore.config import Config

    ecr = boto3.client("ecr", config=Config(max_pool_connections=concurrency + 4,
                                            retries={"mode": "standard"}))
    for repo in sorted({j["repo"] for j in jobs}):
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=repo)

    def one(job: dict) -> int:
        upload_id = ecr.initiate_layer_upload(repositoryName=job["repo"])
        part_size, sent = upload_id["partSize"], 0
        with open(job["path"], "rb") as f:
            while data := f.read(part_size):
                ecr.upload_layer_part(repositoryName=job["repo"], uploadId=upload_id["uploadId"],
                                      partFirstByte=sent, partLastByte=sent + len(data) - 1,
                                      layerPartBlob=data)
                sent += len(data)
        ecr.complete_layer_upload(repositoryName=job["repo"], uploadId=upload_id["uploadId"],
                                  layerDigests=[job["digest"]])
        return sent

    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(one, sorted(jobs, key=lambda j: -j["size"])))
    return {"blobs": len(jobs), "bytes": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("floor", choices=["fetch", "upload"])
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--source", help="the source registry's URL (fetch)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    jobs = json.loads(Path(args.jobs).read_text())
    started = time.monotonic()
    if args.floor == "fetch":
        if not args.source:
            parser.error("fetch needs --source URL")
        result = fetch(jobs, args.source, args.concurrency)
    else:
        result = upload(jobs, args.concurrency)
    result["wall_s"] = time.monotonic() - started
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
