#!/usr/bin/env python3
"""A local Docker Hub and a local AWS in the background, to try the README's commands
(`make sandbox`, `make sandbox-stop`).

    .venv/bin/python tools/sandbox.py start   # stops an old one, starts, seeds, prints `export ...`
    .venv/bin/python tools/sandbox.py env     # the `export ...` lines again
    .venv/bin/python tools/sandbox.py stop    # stops both processes, removes their files

"Docker Hub" (and ghcr.io) is the CNCF distribution registry on 127.0.0.1, seeded with
library/nginx:stable (an OCI index with attestations), library/redis:7 (a manifest
list), library/alpine:3.20 (a plain image) and every tag examples/mirror-config.yaml
selects. AWS is the strict ECR emulator (moto), which also serves SSM (the parameter
/ecr-mirror/config holds examples/mirror-config.yaml) and Secrets Manager (the secret
ecr-mirror/dockerhub). The state (pids, ports, environment) is in .sandbox/state.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where the state lives (SANDBOX_STATE_DIR: elsewhere, e.g. a test's own sandbox).
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or ROOT / ".sandbox")
STATE = STATE_DIR / "state.json"
REGION = "eu-west-1"  # the README's full-URI example names it
CONFIG_FILE = ROOT / "examples" / "mirror-config.yaml"
CONFIG_PARAMETER = "/ecr-mirror/config"
SECRET = "ecr-mirror/dockerhub"
#: What the sandbox's processes are, so that stop never signals a pid reused by another.
COMMAND_MARKS = ("docker-registry", "ecr_mirror_testing.ecr_server")


def environment(ecr_url: str, registry_url: str) -> dict[str, str]:
    """What a shell exports to use the sandbox."""
    host = registry_url.removeprefix("http://")
    return {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": ecr_url,  # ECR, SSM and Secrets Manager alike
        "AWS_EC2_METADATA_DISABLED": "true",
        "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={registry_url},ghcr.io={registry_url}",
        "ECR_MIRROR_INSECURE_REGISTRIES": host,
    }


def exports(env: dict[str, str]) -> str:
    lines = ["unset AWS_PROFILE AWS_SESSION_TOKEN"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    return "\n".join(lines)


def read_state() -> dict | None:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return None


def _is_ours(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return any(mark in command for mark in COMMAND_MARKS)


def _stop_pid(pid: int) -> None:
    if not _is_ours(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _is_ours(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _is_ours(pid):
        os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child (started by an earlier `start`)
        os.waitpid(pid, os.WNOHANG)


def stop() -> bool:
    """Stop what the state file names; True if there was one."""
    state = read_state()
    if state:
        for pid in state.get("pids", []):
            _stop_pid(pid)
        for path in state.get("dirs", []):
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    return bool(state)


def start() -> dict[str, str]:
    """Stop an old sandbox, start and seed a new one; the environment to export."""
    import boto3

    from ecr_mirror_testing import hub
    from ecr_mirror_testing.registry import LocalRegistry

    stop()
    STATE_DIR.mkdir()
    state: dict = {"pids": [], "dirs": []}

    def save() -> None:
        STATE.write_text(json.dumps(state, indent=2) + "\n")

    try:
        registry = LocalRegistry()
        state["dirs"].append(str(registry.tmpdir))
        save()
        registry.start()
        state["pids"].append(registry.detach())
        state["registry"] = registry.url
        save()
        print(f"registry (docker.io, ghcr.io)  {registry.url}  seeding it ...", file=sys.stderr)
        state["images"] = hub.push_sandbox_images(registry.url)
        proc, ecr_url = hub.spawn_ecr_emulator(STATE_DIR / "ecr-emulator.log", detached=True)
        state["pids"].append(proc.pid)
        state["ecr"] = ecr_url
        save()
        print(f"ECR, SSM, Secrets Manager      {ecr_url}  (account {hub.ACCOUNT}, {REGION})",
              file=sys.stderr)
        clients = {name: boto3.client(name, endpoint_url=ecr_url, region_name=REGION,
                                      aws_access_key_id="testing", aws_secret_access_key="testing")
                   for name in ("ssm", "secretsmanager")}
        clients["ssm"].put_parameter(Name=CONFIG_PARAMETER, Value=CONFIG_FILE.read_text(),
                                     Type="String", Overwrite=True)
        clients["secretsmanager"].create_secret(
            Name=SECRET, SecretString=json.dumps({"username": "sandbox", "password": "not-a-token"}))
        state["env"] = environment(ecr_url, registry.url)
        save()
    except BaseException:
        stop()
        raise
    return state["env"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "env"])
    args = parser.parse_args(argv)
    if args.action == "stop":
        print("sandbox stopped" if stop() else "no sandbox was running", file=sys.stderr)
        return 0
    if args.action == "env":
        state = read_state()
        if not state or "env" not in state:
            print("no sandbox is running: make sandbox", file=sys.stderr)
            return 1
        print(exports(state["env"]))
        return 0
    try:
        env = start()
    except RuntimeError as exc:  # docker-registry missing, the emulator would not start
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    print(f"\nRunning in the background until `make sandbox-stop`. Seeded: "
          f"{', '.join(sorted(read_state()['images']))}; SSM {CONFIG_PARAMETER} "
          f"(examples/mirror-config.yaml), secret {SECRET}.\nTo use it (or: eval \"$(.venv/bin/python "
          "tools/sandbox.py env)\"):\n", file=sys.stderr)
    print(exports(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
