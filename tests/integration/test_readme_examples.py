"""Every `ecr-mirror ...` line of the README's ```sh blocks, run verbatim against the
sandbox (`make sandbox`: tools/sandbox.py), checked against what the README says next to
it (issue 11, acceptance 1).

Each README command must have an entry in CHECKS, and each entry a README command: a
command added to the README without a check, or a check whose command left the README,
fails `test_every_readme_command_is_checked`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from ecr_mirror_testing.outputs import json_output

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SANDBOX = ROOT / "tools" / "sandbox.py"
MEDIA_TYPES = ["application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json",
               "application/vnd.oci.image.manifest.v1+json",
               "application/vnd.docker.distribution.manifest.v2+json"]


def readme_commands() -> list[str]:
    """The `ecr-mirror` lines of the README's sh blocks, comments dropped, continuations joined."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "ecr-mirror":
                commands.append(shlex.join(words))
    return commands


# -- the sandbox, started and stopped as make sandbox / make sandbox-stop do -----------------
def sandbox(action: str, state_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SANDBOX_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable, str(SANDBOX), action], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


@pytest.fixture(scope="module")
def sandbox_state(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("sandbox") / "state"
    first = sandbox("start", state_dir)
    assert first.returncode == 0, first.stderr
    old = json.loads((state_dir / "state.json").read_text())
    again = sandbox("start", state_dir)  # idempotent: the old one is stopped first
    assert again.returncode == 0, again.stderr
    state = json.loads((state_dir / "state.json").read_text())
    assert not any(alive(pid) for pid in old["pids"]), "a second start left the first running"
    # What `make sandbox` prints is what a shell exports.
    printed = dict(re.findall(r"^export (\w+)=(.*)$", again.stdout, re.M))
    assert {k: shlex.split(v)[0] for k, v in printed.items()} == state["env"]
    try:
        yield state
    finally:
        stopped = sandbox("stop", state_dir)
        assert stopped.returncode == 0, stopped.stderr
        assert not any(alive(pid) for pid in state["pids"]), "sandbox-stop left a process running"
        assert not state_dir.exists() and not any(Path(d).exists() for d in state["dirs"])


def run(command: str, state: dict) -> subprocess.CompletedProcess:
    """The README line as a shell would run it after pasting the sandbox's exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECR_MIRROR_"))}
    env.update(state["env"], PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
               DOCKER_CONFIG=str(ROOT / "no-docker-config"))
    return subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def ecr(state: dict, region: str | None = None):
    return boto3.client("ecr", endpoint_url=state["ecr"], region_name=region or state["env"]["AWS_REGION"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def ecr_digest(state: dict, repository: str, tag: str, region: str | None = None) -> str:
    answer = ecr(state, region).batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                                               acceptedMediaTypes=MEDIA_TYPES)
    assert answer["images"], f"{repository}:{tag} is not in ECR: {answer['failures']}"
    return answer["images"][0]["imageId"]["imageDigest"]


# -- what the README says next to each command ----------------------------------------------
def copied_nginx(result, state):
    """`copy nginx:stable mirror/nginx`: Docker Hub's nginx:stable, same digest, tag stable."""
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith(("copied ", "unchanged ")), result.stdout
    assert ecr_digest(state, "mirror/nginx", "stable") == state["images"]["library/nginx:stable"]


def copied_nginx_full_uri(result, state):
    """The full-URI target: account 123456789012, region eu-west-1, the given tag."""
    assert result.returncode == 0, result.stderr + result.stdout
    assert ecr_digest(state, "mirror/nginx", "stable", "eu-west-1") == \
        state["images"]["library/nginx:stable"]


def copied_redis_subset_json(result, state):
    """`--platform` twice with `--json`: one JSON object on stdout, a new index of those two
    platforms, its digest different from upstream and the report saying so."""
    assert result.returncode == 0, result.stderr + result.stdout
    report = json_output("copyReport", result.stdout)
    upstream = state["images"]["library/redis:7"]
    assert report["status"] in ("copied", "unchanged")
    assert report["sourceDigest"] == upstream != report["targetDigest"]
    assert upstream in report["digestNote"]
    assert ecr_digest(state, "mirror/redis", "7") == report["targetDigest"]
    answer = ecr(state).batch_get_image(repositoryName="mirror/redis", imageIds=[{"imageTag": "7"}],
                                        acceptedMediaTypes=MEDIA_TYPES)
    index = json.loads(answer["images"][0]["imageManifest"])
    assert sorted(f"{m['platform']['os']}/{m['platform']['architecture']}"
                  for m in index["manifests"]) == ["linux/amd64", "linux/arm64"]


def dry_run_of_the_example_config(result, state):
    """"try it locally first": the plan of examples/mirror-config.yaml, nothing copied."""
    assert result.returncode == 0, result.stderr + result.stdout
    planned = set(re.findall(r"^would copy (\S+) -> (\S+)$", result.stdout, re.M))
    assert planned == {
        *((f"docker.io/library/nginx:{t}", f"mirror/dockerhub/library/nginx:{t}")
          for t in ("stable", "mainline")),
        *((f"docker.io/library/redis:{t}", f"mirror/dockerhub/library/redis:{t}")
          for t in ("7.2.5-alpine", "7.4.1-alpine")),           # glob, the -rc excluded
        *((f"docker.io/library/postgres:{t}", f"mirror/dockerhub/library/postgres:{t}")
          for t in ("16.4", "17.0", "17.2")),                   # >=16 <18, newest 3
        *((f"ghcr.io/external-secrets/external-secrets:{t}", f"mirror/external-secrets:{t}")
          for t in ("v0.10.3", "v0.11.0")),                     # regex, latest 2
    }
    assert "copied=0" in result.stdout and "dryRun=True" in result.stdout
    repositories = {r["repositoryName"] for r in ecr(state).describe_repositories()["repositories"]}
    assert not any(r.startswith(("mirror/dockerhub/", "mirror/external-secrets")) for r in repositories)


def copied_alpine_with_its_sboms(result, state):
    """`--referrer-type`: the image, and of its referrers only the SBOMs, each listed."""
    assert result.returncode == 0, result.stderr + result.stdout
    report = json_output("copyReport", result.stdout)
    assert report["status"] in ("copied", "unchanged")
    assert report["targetDigest"] == state["images"]["library/alpine:3.20"]
    assert ecr_digest(state, "mirror/alpine", "3.20") == report["targetDigest"]
    copied = [r for r in report["referrers"] if r["status"] == "copied"]
    assert all(r["artifactType"] == "application/spdx+json" for r in copied), report["referrers"]
    assert report["referrersCopied"] == len(copied)


def copied_nginx_with_an_event(result, state):
    """`--events`: the copy as usual, its event put on the default bus without a warning."""
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith(("copied ", "retagged ")), result.stdout
    assert "EventBridge" not in result.stderr, result.stderr  # sent: no warning
    assert ecr_digest(state, "mirror/nginx", "events") == state["images"]["library/nginx:stable"]


CHECKS = {
    "ecr-mirror copy nginx:stable mirror/nginx": copied_nginx,
    "ecr-mirror copy nginx:stable 123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/nginx:stable":
        copied_nginx_full_uri,
    "ecr-mirror copy --platform linux/amd64 --platform linux/arm64 redis:7 mirror/redis --json":
        copied_redis_subset_json,
    "ecr-mirror copy --referrer-type application/spdx+json alpine:3.20 mirror/alpine --json":
        copied_alpine_with_its_sboms,
    "ecr-mirror sync --config examples/mirror-config.yaml --dry-run": dry_run_of_the_example_config,
    "ecr-mirror copy nginx:stable mirror/nginx:events --events": copied_nginx_with_an_event,
}


def test_every_readme_command_is_checked():
    commands = readme_commands()
    assert commands, "no ecr-mirror command found in the README's sh blocks"
    assert sorted(set(commands)) == sorted(CHECKS), (
        "README commands and this test's CHECKS differ: "
        f"unchecked {sorted(set(commands) - set(CHECKS))}, gone {sorted(set(CHECKS) - set(commands))}")


@pytest.mark.parametrize("command", readme_commands())
def test_the_readme_command_does_what_the_readme_says(command, sandbox_state):
    check = CHECKS.get(command)
    assert check is not None, f"no check for the README command {command!r}"
    check(run(command, sandbox_state), sandbox_state)
