"""The functions and the CLI with IAM enforced, as AWS would (testing/ecr_mirror_testing/iam.py).

Each run is the real handler (or `ecr-mirror`) on the emulator, with every AWS
call it makes checked against the role SAM generates from template.yaml for that
function (the CLI: the policy the README gives CLI users), action and resource
ARN. A call the role does not allow is answered AccessDenied and fails the test,
naming the function, the action and the resource.

The last tests take one action at a time out of a role and show the run is then
refused exactly that action: every grant is needed, and the oracle enforces.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from ecr_mirror import cli, queue
from ecr_mirror.handlers import common, config_s3, scheduler, warm, worker
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror_testing.ecr_mount import EcrMount
from ecr_mirror_testing.iam import ACCOUNT, IamEnforcer, StackRoles, decide
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, deliver, sqs_record
from tests.integration.conftest import MiB, create_lease_table, ecr_image

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
PARAMETER = "/ecr-mirror/config"  # the template's defaults
SECRET = "ecr-mirror/dockerhub"
QUEUE = "ecr-mirror-CopyQueue-1X2Y3Z4W"  # names as CloudFormation makes them
PLAN_QUEUE = "ecr-mirror-PlanQueue-8A9B0C"
TABLE = "ecr-mirror-LeaseTable-5V6U7T"
CONFIG = f"""
registries:
  docker.io:
    credentials: {SECRET}
defaults:
  targetPrefix: mirror
images:
  - source: nginx
    tags: [stable]
    prune: true
"""
NGINX = "mirror/dockerhub/library/nginx"
BASE = "mirror/dockerhub/library/base"
BIG = 1 * MiB + 17  # a blob this size takes a lease (DynamoDB) before its upload


class Stack:
    """The deployed stack on the emulator: its resources, roles and environment."""

    def __init__(self, monkeypatch, iam: IamEnforcer, source_url: str, mount: EcrMount) -> None:
        self.monkeypatch, self.iam, self.mount = monkeypatch, iam, mount
        self.sqs = boto3.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.plan_url = self.sqs.create_queue(QueueName=PLAN_QUEUE)["QueueUrl"]
        plan_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.plan_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        table = create_lease_table(TABLE)
        boto3.client("ssm").put_parameter(Name=PARAMETER, Value=CONFIG, Type="String", Overwrite=True)
        boto3.client("secretsmanager").create_secret(
            Name=SECRET, SecretString=json.dumps({"username": "u", "password": "p"}))
        self.roles = StackRoles({
            "CopyQueue": {"Ref": self.queue_url, "Arn": queue_arn, "QueueName": QUEUE},
            "LeaseTable": {"Ref": TABLE, "Arn": table["TableArn"]},
            "PlanQueue": {"Ref": self.plan_url, "Arn": plan_arn, "QueueName": PLAN_QUEUE},
        })
        self.source_url = source_url
        self.registry_url = source_url

    @contextmanager
    def function(self, name: str, statements: list[dict] | None = None):
        """Run as the deployed function: its environment (from the translated
        template) and its role enforced."""
        with self.monkeypatch.context() as env:
            for key, value in self.roles.environment(name).items():
                env.setenv(key, value)
            env.setenv("ECR_MIRROR_REGISTRY_ENDPOINTS", f"docker.io={self.source_url}")
            # ECR's registry endpoint (blob mounts), the emulator's, with the role enforced
            env.setenv("ECR_MIRROR_ECR_REGISTRY_ENDPOINT", self.mount.url)
            with self.iam.acting_as(name, self.roles.statements(name) if statements is None
                                    else statements):
                yield

    def messages(self) -> list[dict]:
        return self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                        WaitTimeSeconds=0).get("Messages", [])


@pytest.fixture
def iam():
    with IamEnforcer() as enforcer:
        yield enforcer


@pytest.fixture
def stack(monkeypatch, source, ecr, ecr_endpoint, iam):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    monkeypatch.setattr(warm, "_mirror", None)
    monkeypatch.setattr(common, "_cache", {})
    monkeypatch.setattr(queue, "MAX_SQS_DELAY", 0)  # SQS delays are real time
    with EcrMount(authorize=iam.authorize) as mount:
        stack = Stack(monkeypatch, iam, source.url, mount)
        stack.registry_url = source.upstream  # where images are pushed
        yield stack


@pytest.fixture
def nginx(registry):
    """nginx:stable upstream, with one layer big enough to take a lease."""
    return make_image(registry.url, "library/nginx", "stable",
                      layers=[layer_bytes("iam-big", BIG), layer_bytes("iam-small")])


# ---------------------------------------------------------------- the runs

def mirrored_before(stack: Stack) -> None:
    """nginx:stable copied to `old` earlier by ecr-mirror (so recorded as its tag),
    which the config no longer selects: the scheduled run prunes it."""
    settings = MirrorSettings(lease_table=TABLE, region="us-east-1", registries={
        "docker.io": SourceRegistry(endpoint=stack.source_url)})
    assert Mirror(settings).copy("nginx:stable", f"{NGINX}:old").status == "copied"


def scheduled_run(stack: Stack, statements=None) -> dict:
    mirrored_before(stack)
    with stack.function("SchedulerFunction", statements):
        return scheduler.handler(json.loads((EVENTS / "scheduled.json").read_text()), FakeContext())


def mounted_from(stack: Stack) -> None:
    """An image sharing nginx's big layer, mirrored earlier into another repository
    with blob mounting ENABLED: the worker mounts that layer from there."""
    make_image(stack.registry_url, "library/base", "v1", layers=[layer_bytes("iam-big", BIG)])
    boto3.client("ecr").put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    settings = MirrorSettings(lease_table=TABLE, region="us-east-1", ecr_registry_endpoint=stack.mount.url,
                              registries={"docker.io": SourceRegistry(endpoint=stack.source_url)})
    assert Mirror(settings).copy("base:v1", f"{BASE}:v1").status == "copied"


SHARDED_CONFIG = CONFIG + """
  - source: busybox
    tags: [absent]
"""


def sharded_run(stack: Stack, statements=None) -> tuple[dict, list[dict], set[str]]:
    """A scheduled run of a config split in two shards (PlanShardTags 1), and the
    shards delivered back to the function as its PlanQueue event source would: the
    nginx shard plans, queues and prunes; the busybox one fails (its tag is absent
    upstream) and its retry is brought forward."""
    mirrored_before(stack)
    if stack.roles.parameters.get("ConfigStore") == "s3":
        boto3.client("s3").put_object(Bucket=CONFIG_BUCKET, Key="mirror.yaml", Body=SHARDED_CONFIG.encode())
    else:
        boto3.client("ssm").put_parameter(Name=PARAMETER, Value=SHARDED_CONFIG, Type="String", Overwrite=True)
    roles = StackRoles(stack.roles.resources, {**stack.roles.parameters, "PlanShardTags": "1"})
    with stack.function("SchedulerFunction", roles.statements("SchedulerFunction") if statements is None
                        else statements):
        stack.monkeypatch.setenv("ECR_MIRROR_PLAN_SHARD_TAGS", roles.environment("SchedulerFunction")[
            "ECR_MIRROR_PLAN_SHARD_TAGS"])
        answer = scheduler.handler(json.loads((EVENTS / "scheduled.json").read_text()), FakeContext())
        sqs = boto3.client("sqs")  # the event source mapping, with the function's role
        sqs.get_queue_attributes(QueueUrl=stack.plan_url, AttributeNames=["All"])
        delivered, failed = [], set()
        for _ in range(4):
            messages, failures = deliver(sqs, stack.plan_url, scheduler.handler, batch_size=1)
            delivered += messages
            failed |= failures
    return answer, delivered, failed


def worker_poll(stack: Stack, statements=None) -> tuple[list[dict], set[str]]:
    """Three messages through the worker as Lambda's event source delivers them:
    one copied (its big layer mounted from another mirrored repository), one that
    fails (its retry is brought forward), one still waiting for the pull budget
    (deferred: sent again, delayed)."""
    mounted_from(stack)
    not_before = time.time() + 3600
    for body in ({"source": "nginx:stable", "target": f"{NGINX}:stable"},
                 {"source": "nginx:absent", "target": f"{NGINX}:absent"},
                 {"source": "nginx:later", "target": f"{NGINX}:later", "notBefore": not_before}):
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(body))
    with stack.function("WorkerFunction", statements):
        # The event source mapping polls with the function's role (AWS's Lambda
        # guide: sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes): it
        # reads the queue's attributes, receives, and deletes what did not fail.
        sqs = boto3.client("sqs")
        sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
        return deliver(sqs, stack.queue_url, worker.handler)


def test_the_scheduler_plans_and_queues_with_its_role(stack, nginx, iam):
    answer = scheduled_run(stack)
    iam.assert_clean()
    assert (answer["planned"], answer["queued"], answer["errors"]) == (1, 1, 0), answer
    assert [json.loads(m["Body"])["target"] for m in stack.messages()] == [f"{NGINX}:stable"]
    assert [p["target"] for p in answer["pruned"]] == [f"{NGINX}:old"]
    assert iam.actions_used("SchedulerFunction") == {
        "ssm:GetParameter", "secretsmanager:GetSecretValue", "ecr:BatchGetImage", "sqs:SendMessage",
        "dynamodb:GetItem", "ecr:BatchDeleteImage", "dynamodb:UpdateItem"}


CONFIG_BUCKET = "ecr-mirror-configobjectbucket-9q8r7s"  # as CloudFormation names it


@pytest.fixture
def s3_stack(stack, monkeypatch):
    """The stack deployed with ConfigStore=s3: the config uploaded to the bucket it
    creates, and no SSM parameter at all."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=CONFIG_BUCKET)
    s3.put_object(Bucket=CONFIG_BUCKET, Key="mirror.yaml", Body=CONFIG.encode())
    boto3.client("ssm").delete_parameter(Name=PARAMETER)
    monkeypatch.setattr(config_s3, "_cache", {})
    stack.roles = StackRoles({**stack.roles.resources,
                              "ConfigObjectBucket": {"Ref": CONFIG_BUCKET}}, {"ConfigStore": "s3"})
    return stack


def test_the_scheduler_plans_in_shards_with_its_role(stack, nginx, iam):
    answer, delivered, failed = sharded_run(stack)
    iam.assert_clean()
    assert (answer["shards"], answer["errors"]) == (2, 0), answer
    assert len(delivered) == 2 and len(failed) == 1  # the busybox shard: back in a minute
    assert [json.loads(m["Body"])["target"] for m in stack.messages()] == [f"{NGINX}:stable"]
    # Every action the role grants is used, PlanQueue's by the scheduler and its poller.
    assert iam.actions_used("SchedulerFunction") == set(_granted("SchedulerFunction"))
    plan_arn = stack.roles.resources["PlanQueue"]["Arn"]
    assert {c[2] for c in iam.calls if c[3] == plan_arn} == {
        "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility"}


def test_the_scheduler_reads_the_config_from_s3_with_its_role(s3_stack, nginx, iam):
    answer = scheduled_run(s3_stack)
    iam.assert_clean()
    assert (answer["planned"], answer["queued"], answer["errors"]) == (1, 1, 0), answer
    used = iam.actions_used("SchedulerFunction")
    assert "s3:GetObject" in used and "ssm:GetParameter" not in used
    # and the role grants no read of an SSM config it does not use
    granted = {a for s in s3_stack.roles.statements("SchedulerFunction") for a in s["Action"]}
    assert "ssm:GetParameter" not in granted


def test_the_scheduler_plans_in_shards_from_s3_with_its_role(s3_stack, nginx, iam):
    answer, delivered, failed = sharded_run(s3_stack)
    iam.assert_clean()  # the shards' pinned read (If-Match) needs GetObject alone
    assert (answer["shards"], len(delivered), len(failed)) == (2, 2, 1), answer
    assert [json.loads(m["Body"])["target"] for m in s3_stack.messages()] == [f"{NGINX}:stable"]


def test_the_worker_reads_the_config_from_s3_with_its_role(s3_stack, nginx, ecr, iam):
    messages, failed = worker_poll(s3_stack)
    iam.assert_clean()
    assert len(messages) == 3 and len(failed) == 1
    assert "s3:GetObject" in iam.actions_used("WorkerFunction")


def test_without_s3_getobject_the_config_read_is_refused_exactly(s3_stack, nginx, iam):
    statements = _without(s3_stack.roles.statements("SchedulerFunction"), "s3:GetObject")
    answer = scheduled_run(s3_stack, statements)
    assert [(d.action, d.resource) for d in iam.denials] == [
        ("s3:GetObject", f"arn:aws:s3:::{CONFIG_BUCKET}/mirror.yaml")]
    assert answer["errors"] == 1 and answer["queued"] == 0
    assert f"cannot read the config from s3://{CONFIG_BUCKET}/mirror.yaml: AccessDenied" in (
        answer["errorDetails"][0]["message"])


def test_a_dry_run_with_the_schedulers_role(stack, nginx, iam):
    with stack.function("SchedulerFunction"):
        answer = scheduler.handler(json.loads((EVENTS / "dry-run.json").read_text()), FakeContext())
    iam.assert_clean()
    assert answer["dryRun"] and answer["queued"] == 0 and len(answer["jobs"]) == 1
    assert "sqs:SendMessage" not in iam.actions_used("SchedulerFunction")


def test_the_worker_copies_fails_and_defers_sqs_records_with_its_role(stack, nginx, ecr, iam):
    messages, failed = worker_poll(stack)
    iam.assert_clean()
    assert len(messages) == 3
    bodies = {m["MessageId"]: json.loads(m["Body"]) for m in messages}
    assert [bodies[i]["source"] for i in failed] == ["nginx:absent"]
    assert ecr_image(ecr, NGINX, tag="stable")["imageId"]["imageDigest"] == nginx.digest
    # nginx's big layer was mounted from the repository that held it, not uploaded.
    assert [(home, target) for home, target, _ in stack.mount.server.mounted] == [(BASE, NGINX)]
    # The deferred image is back on the queue, waiting for its window.
    again = [json.loads(m["Body"]) for m in stack.messages()]
    assert [b["source"] for b in again] == ["nginx:later"] and again[0]["notBefore"] > time.time()
    used = iam.actions_used("WorkerFunction")
    assert {"sqs:SendMessage", "sqs:ChangeMessageVisibility", "dynamodb:PutItem",
            "dynamodb:DeleteItem", "dynamodb:UpdateItem", "ecr:PutImage", "events:PutEvents",
            "ecr:CreateRepository", "ecr:PutLifecyclePolicy", "ecr:GetAuthorizationToken",
            "ecr:GetAccountSetting", "ecr:GetDownloadUrlForLayer", "dynamodb:BatchGetItem"} <= used
    # The repository it created expires untagged images after the template's default days.
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName=NGINX)["lifecyclePolicyText"])
    assert policy["rules"][0]["selection"]["countNumber"] == 14


def test_a_direct_invocation_copies_with_the_workers_role(stack, nginx, ecr, iam):
    with stack.function("WorkerFunction"):
        report = worker.handler({"source": "nginx:stable", "target": f"{NGINX}:direct"}, FakeContext())
    iam.assert_clean()
    assert report["status"] == "copied", report.get("error")
    assert ecr_image(ecr, NGINX, tag="direct")["imageId"]["imageDigest"] == nginx.digest


def test_running_out_of_time_hands_the_image_back_with_the_workers_role(stack, nginx, ecr, iam):
    body = json.dumps({"source": "nginx:stable", "target": f"{NGINX}:late"})
    with stack.function("WorkerFunction"):
        # less time left than the template's stop margin (60 s)
        answer = worker.handler({"Records": [sqs_record(body)]}, FakeContext(remaining_ms=30_000))
    iam.assert_clean()
    assert answer["batchItemFailures"] == []  # handed back as a new message, not failed
    again = [json.loads(m["Body"]) for m in stack.messages()]
    assert [(b["target"], b["timeouts"]) for b in again] == [(f"{NGINX}:late", 1)]


# ---------------------------------------------------------------- the CLI

def cli_policy() -> list[dict]:
    """The policy README.md gives CLI users (its "IAM policy for the CLI" JSON),
    for the account the emulator plays."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### IAM policy for the CLI", 1)[1]
    document = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    return json.loads(document.replace("111122223333", ACCOUNT))["Statement"]


def cli_copy_and_sync(iam, source, tmp_path, capsys, statements) -> list[tuple[int, dict]]:
    """`ecr-mirror copy` into a new repository, then `sync` twice (the second
    finds nothing to do); (exit status, JSON output) of each."""
    config = tmp_path / "mirror.yaml"
    config.write_text(f"registries:\n  {source.host}: {{insecure: true}}\n"
                      f"defaults: {{targetPrefix: mirror}}\n"
                      f"images:\n  - source: {source.host}/library/nginx\n    tags: [stable]\n")
    outputs = []
    with iam.acting_as("ecr-mirror CLI", statements):
        for argv in (["copy", f"{source.host}/library/nginx:stable", "mirror/cli/nginx",
                      "--insecure", "--json"],
                     ["sync", "--config", str(config), "--json"],
                     ["sync", "--config", str(config), "--json"]):
            code = cli.main(argv)
            outputs.append((code, json.loads(capsys.readouterr().out)))
    return outputs


def test_the_cli_copies_and_syncs_with_the_readmes_policy(source, nginx, ecr, iam, tmp_path, capsys):
    outputs = cli_copy_and_sync(iam, source, tmp_path, capsys, cli_policy())
    iam.assert_clean()
    assert [code for code, _ in outputs] == [0, 0, 0], outputs
    (_, copied), (_, synced), (_, again) = outputs
    assert copied["status"] == "copied" and copied["targetDigest"] == nginx.digest
    assert synced["summary"]["copied"] == 1 and again["summary"]["unchanged"] == 1
    repository, tag = synced["reports"][0]["target"].rsplit(":", 1)
    assert repository.startswith("mirror/") and tag == "stable"
    assert ecr_image(ecr, repository, tag=tag)["imageId"]["imageDigest"] == nginx.digest


def test_the_cli_policy_allows_nothing_outside_the_prefix():
    statements = cli_policy()
    inside = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/mirror/x/y"
    outside = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/other/y"
    assert decide(statements, "ecr:PutImage", inside) == "allowed"
    assert decide(statements, "ecr:PutImage", outside) == "not allowed"
    assert decide(statements, "ecr:DeleteRepository", inside) == "not allowed"


# ---------------------------------------------------------------- every grant is needed

def _granted(function: str) -> list[str]:
    statements = StackRoles(resources=None).statements(function)
    return [a for s in statements for a in s["Action"]]


def _without(statements: list[dict], action: str) -> list[dict]:
    out = []
    for s in statements:
        actions = [a for a in s["Action"] if a != action]
        if actions:
            out.append({**s, "Action": actions})
    return out


RUNS = {"SchedulerFunction": sharded_run, "WorkerFunction": worker_poll}


#: Calls that keep storage in check: a refusal is logged, never a failed copy.
HOUSEKEEPING = {"ecr:PutLifecyclePolicy"}
POLLER_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}


@pytest.mark.parametrize("function, action", [
    (function, action) for function in RUNS for action in _granted(function)])

def test_each_grant_is_needed(stack, nginx, iam, function, action):
    # A denied call that the code makes is an answer it reports (plan errors, a
    # failed report, a batch item failure), never an exception out of the handler.
    # Only the event source mapping's own calls (the poller, played by the test)
    # fail outright, as they do in AWS.
    try:
        RUNS[function](stack, _without(stack.roles.statements(function), action))
    except ClientError as exc:
        assert action in POLLER_ACTIONS, f"{function} raised instead of reporting: {exc}"
    assert iam.denials, f"{function} ran without {action}: the grant is not needed"
    assert {d.action for d in iam.denials} == {action}, [str(d) for d in iam.denials]
    # (an account-level action, such as ecr:GetAuthorizationToken, is on "*")
    with pytest.raises(AssertionError, match=re.escape(f"{function}: {action} on ") + r"(arn:aws:|\*)"):
        iam.assert_clean()


@pytest.mark.parametrize("action", [a for s in cli_policy() for a in s["Action"]])
def test_each_action_of_the_cli_policy_is_needed(source, nginx, ecr, iam, tmp_path, capsys, action):
    outputs = cli_copy_and_sync(iam, source, tmp_path, capsys, _without(cli_policy(), action))
    assert {d.action for d in iam.denials} == {action}, [str(d) for d in iam.denials]
    if action in HOUSEKEEPING:  # refused: logged, and the image still lands
        assert outputs[0][0] == 0 and outputs[0][1]["status"] == "copied"
    else:
        assert outputs[0][0] == 1 and outputs[0][1]["status"] == "failed"  # the copy said so


# ---------------------------------------------------------------- the oracle itself

REPOSITORY = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/"


@pytest.mark.parametrize("pattern, resource, expected", [
    ("mirror/*", "mirror/a/b", "allowed"),
    ("mirror/*", "mirror", "not allowed"),            # the whole ARN, not a prefix of it
    ("mirror/?", "mirror/a", "allowed"),              # ? is one character
    ("mirror/?", "mirror/ab", "not allowed"),
    ("mirror.x/*", "mirrorAx/a", "not allowed"),      # . is a dot (moto's matcher: any character)
    ("mirror/a", "mirror/a\n", "not allowed"),        # no trailing newline slips through
    ("Mirror/*", "mirror/a", "not allowed"),          # resources are case-sensitive
])
def test_resources_match_with_iams_wildcards(pattern, resource, expected):
    allow = [{"Effect": "Allow", "Action": "ecr:PutImage", "Resource": REPOSITORY + pattern}]
    assert decide(allow, "ecr:PutImage", REPOSITORY + resource) == expected


def test_actions_match_case_insensitively_and_an_explicit_deny_wins():
    statements = [{"Effect": "Allow", "Action": "ECR:put*", "Resource": "*"}]
    assert decide(statements, "ecr:PutImage", REPOSITORY + "a") == "allowed"
    assert decide(statements, "ecr:BatchGetImage", REPOSITORY + "a") == "not allowed"
    statements.append({"Effect": "Deny", "Action": "ecr:PutImage", "Resource": REPOSITORY + "a"})
    assert decide(statements, "ecr:PutImage", REPOSITORY + "a") == "explicitly denied"
    assert decide(statements, "ecr:PutImage", REPOSITORY + "b") == "allowed"


@pytest.mark.parametrize("element", [{"NotResource": "*"}, {"Condition": {"Bool": {"aws:SecureTransport": "true"}}}])
def test_what_the_oracle_cannot_evaluate_is_refused_not_guessed(element):
    with pytest.raises(NotImplementedError):
        decide([{"Effect": "Allow", "Action": "ecr:PutImage", **element}], "ecr:PutImage", "x")


def test_a_denied_call_gets_awss_answer_and_is_recorded(ecr, iam):
    with iam.acting_as("SomeFunction", [{"Effect": "Allow", "Action": "ecr:BatchGetImage",
                                         "Resource": REPOSITORY + "other/*"}]):
        with pytest.raises(ClientError) as denied:
            ecr.batch_get_image(repositoryName="mirror/x", imageIds=[{"imageTag": "1"}])
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert f"ecr:BatchGetImage on resource: {REPOSITORY}mirror/x" in error["Message"]
    with pytest.raises(AssertionError, match=re.escape(
            f"SomeFunction: ecr:BatchGetImage on {REPOSITORY}mirror/x is not allowed "
            "(the call ecr.BatchGetImage)")):
        iam.assert_clean()


def test_a_call_the_oracle_does_not_know_fails_loudly(ecr, iam):
    with iam.acting_as("SomeFunction", [{"Effect": "Allow", "Action": "*", "Resource": "*"}]):
        with pytest.raises(AssertionError, match=r"ecr\.DescribeRepositories is not in"):
            ecr.describe_repositories()
    with pytest.raises(AssertionError, match=r"SomeFunction: ecr\.DescribeRepositories: unknown"):
        iam.assert_clean()


# ---------------------------------------------------------------- the gate's key in SSM

COSIGN_KEY = "/ecr-mirror/cosign.pub"


def gated_copy(stack: Stack, statements: list[dict]) -> dict:
    """A direct invocation with the gate's key in SSM: the worker reads it with its role."""
    from ecr_mirror import keys
    from tests.unit.test_keys import PUBLIC

    boto3.client("ssm").put_parameter(Name=COSIGN_KEY, Value=PUBLIC.decode(), Type="SecureString",
                                      Overwrite=True)
    stack.monkeypatch.setattr(keys, "_cache", {})
    with stack.function("WorkerFunction", statements):
        return worker.handler({"source": "nginx:stable", "target": f"{NGINX}:gated",
                               "verify": {"cosignKey": f"ssm:{COSIGN_KEY}"}}, FakeContext())


def test_the_worker_reads_the_cosign_key_the_template_grants(stack, nginx, iam):
    roles = StackRoles(stack.roles.resources, {"CosignKeyParameterPrefix": "/ecr-mirror/cosign"})
    report = gated_copy(stack, roles.statements("WorkerFunction"))
    iam.assert_clean()
    assert report["status"] in ("copied", "rejected"), report.get("error")  # unsigned: the gate decides
    key_arn = f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter{COSIGN_KEY}"
    assert ("WorkerFunction", "GetParameter", "ssm:GetParameter", key_arn) in iam.calls
    # The scheduler passes the key's name on and never reads it: no grant.
    assert not [s for s in roles.statements("SchedulerFunction") if s.get("Sid") == "ReadCosignKeyParameters"]


@pytest.mark.parametrize("parameters", [{}, {"CosignKeyParameterPrefix": "/ecr-mirror/other"}])
def test_without_the_grant_the_key_read_is_refused_exactly(stack, nginx, ecr, iam, parameters):
    roles = StackRoles(stack.roles.resources, parameters)
    report = gated_copy(stack, roles.statements("WorkerFunction"))
    key_arn = f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter{COSIGN_KEY}"
    assert [(d.action, d.resource) for d in iam.denials] == [("ssm:GetParameter", key_arn)]
    assert report["status"] == "failed" and report["error"]["type"] == "CosignKeyError"
    assert report["error"]["message"].startswith(
        f"cannot read the cosign key ssm:{COSIGN_KEY}: AccessDeniedException: ")
    assert "CosignKeyParameterPrefix" in report["error"]["message"]  # how to grant it
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):  # nothing copied ungated
        ecr.describe_repositories(repositoryNames=[NGINX])
