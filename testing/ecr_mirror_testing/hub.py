"""A local "Docker Hub" and a local AWS, shared by `make demo` (tools/demo.py) and
`make sandbox` (tools/sandbox.py): the images they push under Docker Hub's names and
the ECR emulator process they start.

    push_nginx_stable(registry.url)       # library/nginx:stable, an OCI index + attestations
    push_sandbox_images(registry.url)     # that, a manifest list, a plain image, and
                                          # every tag examples/mirror-config.yaml selects
    proc, url = spawn_ecr_emulator(log)   # python -m ecr_mirror_testing.ecr_server
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from . import images

MiB = 1 << 20
#: The account the emulator (moto) answers for.
ACCOUNT = "123456789012"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
NGINX_PLATFORMS = [("linux", "amd64", None), ("linux", "arm64", "v8")]
NGINX_BIG_LAYER = 12 * MiB  # bigger than ECR's 10 MiB upload part: a multi-part upload
NGINX_SMALL_LAYER = 96 * 1024
EMULATOR_START_TIMEOUT = 60.0

#: What the sandbox's registry holds besides nginx:stable, by the name the registry gives
#: the repository. True: examples/mirror-config.yaml selects the tag.
CONFIG_TAGS = {
    "library/nginx": {"mainline": True},
    "library/redis": {"7.2.5-alpine": True, "7.4.1-alpine": True, "7.4.2-rc1-alpine": False,
                      "6.2-alpine": False},
    "library/postgres": {"15.8": False, "16.3": False, "16.4": True, "17.0": True, "17.2": True,
                         "18.0": False},
    # ghcr.io/external-secrets/external-secrets (the same local registry serves ghcr.io)
    "external-secrets/external-secrets": {"v0.9.20": False, "v0.10.3": True, "v0.11.0": True,
                                          "v0.10.0": False},
}


def push_nginx_stable(registry_url: str) -> images.PushedImage:
    """`library/nginx:stable`: an OCI index of linux/amd64 and linux/arm64/v8 with their
    attestation manifests, both platforms on one 12 MiB base layer."""
    big_layer = images.layer_bytes("demo: shared base layer", NGINX_BIG_LAYER)
    return images.make_index(
        registry_url, "library/nginx", "stable", platforms=NGINX_PLATFORMS, oci=True,
        attestations=True, layers_per_image=2, layer_size=NGINX_SMALL_LAYER, shared_base=big_layer)


def push_sandbox_images(registry_url: str) -> dict[str, str]:
    """Every image of the sandbox; `repository:tag` -> digest."""
    digests = {"library/nginx:stable": push_nginx_stable(registry_url).digest}
    redis7 = images.make_index(registry_url, "library/redis", "7", oci=False, attestations=False,
                               platforms=[("linux", "amd64", None), ("linux", "arm64", "v8")])
    digests["library/redis:7"] = redis7.digest
    alpine = images.make_image(registry_url, "library/alpine", "3.20",
                               layers=[images.layer_bytes("alpine 3.20")])
    digests["library/alpine:3.20"] = alpine.digest
    for repo, tags in CONFIG_TAGS.items():
        for tag in tags:
            if repo.startswith("external-secrets/"):  # the config copies linux/amd64 only
                pushed = images.make_index(registry_url, repo, tag, oci=True, attestations=True,
                                           platforms=[("linux", "amd64", None),
                                                      ("linux", "arm64", "v8")])
            else:
                pushed = images.make_image(registry_url, repo, tag, layers=[
                    images.layer_bytes(f"{repo} base"), images.layer_bytes(f"{repo} {tag}")])
            digests[f"{repo}:{tag}"] = pushed.digest
    return digests


def spawn_ecr_emulator(log_path: Path, *, detached: bool = False) -> tuple[subprocess.Popen, str]:
    """Run `python -m ecr_mirror_testing.ecr_server --port 0`; return it and its URL.

    The emulator writes its URL as the first line of stdout once it accepts requests;
    stdout and stderr go to `log_path` (shown if it fails to start). It is kept out of
    the terminal's process group (it handles SIGINT itself); `detached`: in a session of
    its own, to outlive the caller.
    """
    out_path = log_path.with_suffix(".url")
    with open(log_path, "wb") as log, open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecr_mirror_testing.ecr_server", "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=log,
            **({"start_new_session": True} if detached else {"process_group": 0}))
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    first_line = ""
    while time.monotonic() < deadline and proc.poll() is None and not first_line.endswith("\n"):
        time.sleep(0.05)
        first_line = out_path.read_text()
    out_path.unlink()  # nothing else is ever written there
    url = first_line.strip()
    if not url.startswith("http://127.0.0.1:"):
        stop_process(proc)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"the ECR emulator did not start (got {url!r}); its log:\n{tail}")
    return proc, url


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s; idempotent."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
