"""template.yaml, read as data: least privilege, the queue's redrive and timeouts,
the worker's event source, the build methods and the settings the handlers read."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest

from .cfn import (
    REPO,
    as_list,
    ecr_write_actions,
    function_environment,
    function_property,
    grants_on_any_resource,
    iam_statements,
    load_template,
    resources,
)

PREFIX_ARN = "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${RepositoryPrefix}/*"
COMMON_ENV = {"ECR_MIRROR_CONFIG_PARAMETER", "ECR_MIRROR_CONFIG_OBJECT", "ECR_MIRROR_PREFIX", "ECR_MIRROR_SCAN_ON_PUSH",
              "ECR_MIRROR_TAG_MUTABILITY", "ECR_MIRROR_KMS_KEY", "ECR_MIRROR_CONCURRENCY",
              "ECR_MIRROR_UNTAGGED_EXPIRY_DAYS",
              "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
CUSTOM_METRICS = ["ImagesCopied", "ImagesUnchanged", "ImagesPinned", "ImagesFailed", "ImagesRejected", "BlobsUploaded",
                  "BytesUploaded", "BlobsSkipped", "BytesSkipped", "BlobsMounted", "BytesMounted", "SourcePulls",
                  "RateLimitRemaining", "EventsSent", "EventsFailed", "TagsPruned"]


@pytest.fixture(scope="module")
def template():
    return load_template()


def _worker_mapping(template):
    """The SQS → worker mapping: an explicit EventSourceMapping or a SAM SQS event."""
    for esm in resources(template, "AWS::Lambda::EventSourceMapping").values():
        props = esm["Properties"]
        if props["FunctionName"] in ({"Ref": "WorkerFunction"}, {"Fn::GetAtt": ["WorkerFunction", "Arn"]}):
            return props
    for event in template["Resources"]["WorkerFunction"]["Properties"].get("Events", {}).values():
        if event["Type"] == "SQS":
            return event["Properties"]
    pytest.fail("nothing feeds CopyQueue to WorkerFunction")


def _sid_statement(template, function, sid):
    for _, statement in iam_statements(template["Resources"][function]["Properties"]["Policies"]):
        if statement.get("Sid") == sid:
            return statement
    pytest.fail(f"{function} has no statement {sid}")


# ---------------------------------------------------------------- IAM

def test_template_has_iam_statements_to_check(template):
    # Guard for the test below: the walker must actually find the policies.
    found = list(iam_statements(template))
    assert len(found) >= 8, found


def test_no_statement_grants_ecr_writes_on_any_resource(template):
    offending = [(where, ecr_write_actions(s)) for where, s in iam_statements(template)
                 if ecr_write_actions(s) and grants_on_any_resource(s)]
    assert offending == []


def test_ecr_writes_only_under_the_repository_prefix(template):
    for where, statement in iam_statements(template):
        if ecr_write_actions(statement):
            assert as_list(statement["Resource"]) == [{"Fn::Sub": PREFIX_ARN}], where


def test_the_registry_token_is_granted_for_blob_mounts_only(template):
    # The layer-upload API needs no registry login token; only the worker's blob
    # mounts (ECR's registry endpoint) do, and BlobMounting=disabled takes it away.
    from ecr_mirror_testing.iam import StackRoles

    holders = [where for where, s in iam_statements(template)
               if "ecr:GetAuthorizationToken" in as_list(s.get("Action", []))]
    assert holders and all(w.startswith("/Resources/WorkerFunction/") for w in holders), holders
    mounting = _sid_statement(template, "WorkerFunction", "BlobMountsAccountLevel")
    assert set(mounting["Action"]) == {"ecr:GetAuthorizationToken", "ecr:GetAccountSetting"}
    for function in ("WorkerFunction", "SchedulerFunction"):
        off = StackRoles(resources=None, parameters={"BlobMounting": "disabled"}).statements(function)
        actions = {a for s in off for a in as_list(s["Action"])}
        assert not actions & {"ecr:GetAuthorizationToken", "ecr:GetAccountSetting",
                              "ecr:GetDownloadUrlForLayer", "dynamodb:BatchGetItem"}, function


def test_scheduler_reads_ecr_and_writes_nothing_but_the_prunes_untagging(template):
    ecr = _sid_statement(template, "SchedulerFunction", "EcrReadMirrorRepositoriesOnly")
    assert as_list(ecr["Action"]) == ["ecr:BatchGetImage"]
    prune = _sid_statement(template, "SchedulerFunction", "PruneMirrorTagsOnly")
    assert as_list(prune["Action"]) == ["ecr:BatchDeleteImage"]
    assert as_list(prune["Resource"]) == [{"Fn::Sub": PREFIX_ARN}]
    writes = [a for _, s in iam_statements(template["Resources"]["SchedulerFunction"])
              for a in ecr_write_actions(s)]
    assert writes == ["ecr:BatchDeleteImage"]


def test_worker_writes_exactly_the_copy_actions(template):
    ecr = _sid_statement(template, "WorkerFunction", "EcrReadWriteMirrorRepositoriesOnly")
    assert set(ecr["Action"]) == {
        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CreateRepository",
        "ecr:TagResource", "ecr:PutLifecyclePolicy",
        "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
        "ecr:PutImage"}


@pytest.mark.parametrize("function", ["SchedulerFunction", "WorkerFunction"])
def test_config_and_secrets_are_scoped(template, function):
    # ConfigStore chooses one of two statements: the parameter, or the object.
    ssm, s3 = sorted((st for _, st in iam_statements(template["Resources"][function]["Properties"]
                                                     ["Policies"]) if st.get("Sid") == "ReadMirrorConfig"),
                     key=lambda st: st["Action"], reverse=True)
    assert ssm["Action"] == "ssm:GetParameter"
    assert ssm["Resource"]["Fn::Sub"].endswith(":parameter${ConfigParameterName}")
    assert s3["Action"] == "s3:GetObject"  # that one object, no listing, no versions
    assert s3["Resource"]["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::${Bucket}/${ConfigObjectKey}"
    secrets = _sid_statement(template, function, "ReadSourceRegistryCredentials")
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    assert secrets["Resource"]["Fn::Sub"].endswith(":secret:${SecretNamePrefix}*")
    # The parameter ARN drops the name's leading "/": the name must have one.
    assert template["Parameters"]["ConfigParameterName"]["AllowedPattern"].startswith("^/")


def test_sqs_permissions_are_on_the_copy_queue_only(template):
    send = _sid_statement(template, "SchedulerFunction", "QueueCopies")
    assert send["Action"] == "sqs:SendMessage"
    assert send["Resource"] == {"Fn::GetAtt": ["CopyQueue", "Arn"]}
    queue = _sid_statement(template, "WorkerFunction", "ItsOwnQueueOnly")
    assert set(queue["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                    "sqs:ChangeMessageVisibility", "sqs:SendMessage"}
    assert queue["Resource"] == {"Fn::GetAtt": ["CopyQueue", "Arn"]}
    # A SAM `SQS` event would add the managed AWSLambdaSQSQueueExecutionRole (every queue).
    events = template["Resources"]["WorkerFunction"]["Properties"].get("Events", {})
    assert not [e for e in events.values() if e["Type"] == "SQS"]


def test_events_are_put_on_the_configured_bus_only(template):
    put = _sid_statement(template, "WorkerFunction", "PutMirrorEventsOnItsBusOnly")
    assert put["Action"] == "events:PutEvents"
    assert put["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:"
                                          "${AWS::AccountId}:event-bus/${EventBusName}"}
    granted = [s for f in ("SchedulerFunction", "WorkerFunction")
               for _, s in iam_statements(template["Resources"][f]["Properties"]["Policies"])
               if any(a.startswith("events:") for a in as_list(s.get("Action", [])))]
    assert granted == [put]  # nowhere else, and not to the scheduler
    assert function_environment(template, "WorkerFunction")["ECR_MIRROR_EVENT_BUS"] == {
        "Ref": "EventBusName"}
    parameter = template["Parameters"]["EventBusName"]
    assert parameter["Default"] == "default"
    assert re.fullmatch(parameter["AllowedPattern"], "ecr-mirror-events")
    for wrong in ("", "arn:aws:events:us-east-1:123456789012:event-bus/x", "a b", "*"):
        assert not re.fullmatch(parameter["AllowedPattern"], wrong), wrong


def test_blob_leases_are_the_workers_own_table_only(template):
    leases = _sid_statement(template, "WorkerFunction", "BlobLeases")
    assert set(leases["Action"]) == {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"}
    assert leases["Resource"] == {"Fn::GetAtt": ["LeaseTable", "Arn"]}
    assert function_environment(template, "WorkerFunction")["ECR_MIRROR_LEASE_TABLE"] == {"Ref": "LeaseTable"}
    table = template["Resources"]["LeaseTable"]["Properties"]
    # The key and TTL attribute the code writes (DynamoLeases).
    assert table["KeySchema"] == [{"AttributeName": "lease", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    # The scheduler reads which tags are ecr-mirror's and forgets those it pruned; no leases.
    dynamodb = [s for _, s in iam_statements(template["Resources"]["SchedulerFunction"]["Properties"]["Policies"])
                if any(a.startswith("dynamodb:") for a in as_list(s.get("Action")))]
    assert [(set(as_list(s["Action"])), s["Resource"]) for s in dynamodb] == [
        ({"dynamodb:GetItem", "dynamodb:UpdateItem"}, {"Fn::GetAtt": ["LeaseTable", "Arn"]})]
    assert function_environment(template, "SchedulerFunction")["ECR_MIRROR_LEASE_TABLE"] == {"Ref": "LeaseTable"}


def test_kms_only_when_a_key_is_given(template):
    for _, statement in iam_statements(template):
        if any(str(a).startswith("kms:") for a in as_list(statement.get("Action", []))):
            assert statement["Resource"] == {"Ref": "KmsKeyArn"}
    policies = template["Resources"]["WorkerFunction"]["Properties"]["Policies"]
    kms = [p for p in policies if isinstance(p, dict) and "Fn::If" in p]
    assert kms and kms[0]["Fn::If"][0] == "HasKmsKey" and kms[0]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


# ---------------------------------------------------------------- queue and worker

def test_worker_timeout_concurrency_and_queue_visibility(template):
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    timeout = function_property(template, "WorkerFunction", "Timeout")
    assert timeout == 900
    assert worker["ReservedConcurrentExecutions"] == {"Ref": "WorkerReservedConcurrency"}
    assert template["Parameters"]["WorkerReservedConcurrency"]["Default"] == 2
    queue = template["Resources"]["CopyQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * timeout


def test_dead_letter_queue_after_three_receives(template):
    queue = template["Resources"]["CopyQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
    from ecr_mirror.queue import MAX_RECEIVES  # the worker's "last receive" (events.py)

    assert queue["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVES
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    dlq = template["Resources"]["DeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    # A message keeps its first enqueue time in the DLQ: it must outlive the source queue's.
    assert dlq["MessageRetentionPeriod"] >= queue.get("MessageRetentionPeriod", 345600)
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True


def test_worker_reports_batch_item_failures(template):
    mapping = _worker_mapping(template)
    assert "ReportBatchItemFailures" in mapping["FunctionResponseTypes"]
    assert mapping.get("EventSourceArn", mapping.get("Queue")) == {"Fn::GetAtt": ["CopyQueue", "Arn"]}
    assert mapping["BatchSize"] <= 10
    assert mapping["MaximumBatchingWindowInSeconds"] == 0
    # Never more pollers' invocations than the reserved concurrency: no throttled receives.
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerReservedConcurrency"}


def test_scheduler_runs_on_the_schedule(template):
    scheduler = template["Resources"]["SchedulerFunction"]["Properties"]
    (event,) = [e for e in scheduler["Events"].values() if e["Type"] == "ScheduleV2"]
    props = event["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert props["State"] == {"Fn::If": ["ScheduleIsEnabled", "ENABLED", "DISABLED"]}
    assert json.loads(props["Input"]) == {"source": "ecr-mirror.schedule"}
    assert template["Conditions"]["ScheduleIsEnabled"] == {"Fn::Equals": [{"Ref": "ScheduleEnabled"}, "true"]}
    assert scheduler["Environment"]["Variables"]["ECR_MIRROR_QUEUE_URL"] == {"Ref": "CopyQueue"}


# ---------------------------------------------------------------- code and settings

def test_functions_are_built_from_the_package_alone(template):
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == {"SchedulerFunction", "WorkerFunction"}
    makefile = (REPO / "Makefile").read_text()
    for name, function in functions.items():
        assert function_property(template, name, "Runtime") == "python3.13"
        assert function["Metadata"]["BuildMethod"] == "makefile"
        assert re.search(rf"^[^\n#]*\bbuild-{name}\b[^\n]*:", makefile, re.M), \
            f"the Makefile has no build-{name} target"
    assert function_property(template, "WorkerFunction", "Layers") == [{"Ref": "DependenciesLayer"}]
    assert function_property(template, "WorkerFunction", "Architectures") == [{"Ref": "Architecture"}]
    assert function_property(template, "WorkerFunction", "Tracing") == "Active"


# The python3.13 runtime's own packages: boto3 and its dependencies. The layer leaves
# them out (a copy would shadow the runtime's).
RUNTIME_DISTRIBUTIONS = {"boto3", "botocore", "s3transfer", "jmespath", "python_dateutil", "six"}


def test_layer_is_built_by_the_makefile_for_the_architecture(template):
    layer = template["Resources"]["DependenciesLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/deps/"
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    # SAM passes a makefile build no architecture: the Makefile it runs is picked by it.
    assert layer["Metadata"] == {"BuildMethod": "makefile",
                                 "BuildArchitecture": {"Ref": "Architecture"},
                                 "ContextPath": {"Fn::Sub": "layers/deps/${Architecture}"}}
    assert re.search(r"^build-DependenciesLayer\b[^\n]*:", (REPO / "Makefile").read_text(), re.M)


@pytest.mark.parametrize("architecture, platform", [("arm64", "manylinux2014_aarch64"),
                                                    ("x86_64", "manylinux2014_x86_64")])
def test_layer_makefile_of_each_architecture(template, architecture, platform, tmp_path):
    assert architecture in template["Parameters"]["Architecture"]["AllowedValues"]
    makefile = REPO / "layers" / "deps" / architecture / "Makefile"
    # What `sam build` runs (make -n: print the commands, run none).
    result = subprocess.run(["make", "-n", "--makefile", str(makefile), "build-DependenciesLayer",
                             f"ARTIFACTS_DIR={tmp_path}"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pip = " ".join(line.strip(" \\") for line in result.stdout.splitlines()
                   if "-m pip" in line or line.startswith("  "))
    for option in ("--no-deps", "--only-binary=:all:", f"--platform {platform}",
                   "--implementation cp", "--python-version 3.13",
                   f'--target "{tmp_path}/python"', "-r requirements.txt"):
        assert option in pip, f"{option!r} not in: {pip}"
    assert "python3.13 -m compileall" in result.stdout
    assert "--invalidation-mode unchecked-hash" in result.stdout


def test_layer_pins_every_package_but_the_runtimes():
    pins = {}
    for line in (REPO / "layers" / "deps" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and not line.startswith("-"), f"pin {line!r} with =="
            pins[re.sub(r"[-_.]+", "_", name).lower()] = version
    assert {"requests", "aws_lambda_powertools", "aws_xray_sdk", "wrapt"} <= set(pins)
    assert set(pins) & RUNTIME_DISTRIBUTIONS == set()


def test_handlers_get_their_settings(template):
    scheduler = function_environment(template, "SchedulerFunction")
    worker = function_environment(template, "WorkerFunction")
    assert set(scheduler) >= COMMON_ENV and set(worker) >= COMMON_ENV
    assert "ECR_MIRROR_QUEUE_URL" in scheduler
    assert "ECR_MIRROR_STOP_MARGIN_SECONDS" in worker
    # The worker hands a failed message back sooner with ChangeMessageVisibility.
    assert worker["ECR_MIRROR_QUEUE_URL"] == {"Ref": "CopyQueue"}
    assert worker["POWERTOOLS_SERVICE_NAME"] == "ecr-mirror"
    assert worker["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}


def test_default_config_is_a_valid_mirror_config(template):
    config = pytest.importorskip("ecr_mirror.sync.config")
    text = template["Resources"]["ConfigParameter"]["Properties"]["Value"]
    assert len(text.encode()) <= 4096  # a Standard SSM parameter
    parsed = config.load_config(text, origin="the template's default config")
    assert parsed.images == [] and parsed.errors == []


# ---------------------------------------------------------------- monitoring

def test_alarms_notify_only_when_an_email_is_given(template):
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert {"DeadLetterQueueAlarm", "WorkerErrorsAlarm", "SchedulerErrorsAlarm",
            "PlanErrorsAlarm", "ImagesRejectedAlarm"} <= set(alarms)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
    assert template["Resources"]["AlarmTopic"]["Condition"] == "HasAlarmEmail"
    dlq = alarms["DeadLetterQueueAlarm"]["Properties"]
    assert (dlq["MetricName"], dlq["Threshold"], dlq["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")


def _dashboard_metrics(body):
    """Each metric row as (namespace, name, {dimension: value}), CloudWatch's "." and
    "..." shorthands (same as the row above) expanded."""
    rows = []
    for widget in body["widgets"]:
        previous: list = []
        for row in widget["properties"].get("metrics", []) if widget["type"] == "metric" else []:
            fields = [f for f in row if not isinstance(f, dict)]
            if fields[:1] == ["..."]:
                fields = previous
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
            previous = fields
            rows.append((fields[0], fields[1], dict(zip(fields[2::2], fields[3::2], strict=False))))
    return rows


def test_dashboard_shows_the_metrics(template):
    body_template, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    # !Sub placeholders stand inside JSON strings: name them, then read the JSON.
    body = json.loads(re.sub(r"\$\{([^}]+)\}", r"\1", body_template))
    rows = _dashboard_metrics(body)
    custom = {name for namespace, name, dims in rows
              if namespace == "MetricsNamespace" and dims == {"service": "Service"}}
    assert set(CUSTOM_METRICS) <= custom
    assert variables["Service"] == "ecr-mirror"
    by_namespace = {(namespace, name, tuple(dims.values())) for namespace, name, dims in rows}
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("CopyQueueName",)) in by_namespace
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("DeadLetterQueueName",)) in by_namespace
    for metric in ("Errors", "Duration", "Throttles"):
        assert ("AWS/Lambda", metric, ("WorkerFunction",)) in by_namespace


def test_outputs(template):
    assert {"SchedulerFunctionName", "SchedulerFunctionArn", "WorkerFunctionName",
            "WorkerFunctionArn", "CopyQueueUrl", "DeadLetterQueueUrl", "DashboardName",
            "ConfigParameterName"} <= set(template["Outputs"])


# ---------------------------------------------------------------- samconfig.toml

_OVERRIDE = re.compile(r'^(?P<key>[A-Za-z0-9]+)=(?:"(?P<quoted>[^"]*)"|(?P<bare>\S*))$')


def test_samconfig_parameters_are_the_templates(template):
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["stack_name"] == "ecr-mirror"
    assert config["default"]["validate"]["parameters"]["lint"] is True
    deploy = config["default"]["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"] and deploy["resolve_s3"] is True
    for command in ("build", "deploy", "local_invoke"):
        for item in config["default"][command]["parameters"]["parameter_overrides"]:
            m = _OVERRIDE.match(item)
            assert m, f"{command}: {item!r} is not Key=\"value\""
            assert m["bare"] is None, f'{command}: quote the value, sam splits {item!r} at spaces'
            parameter = template["Parameters"].get(m["key"])
            assert parameter, f"{command}: {m['key']} is not a template parameter"
            value = m["quoted"]
            if "AllowedValues" in parameter:
                assert value in [str(v) for v in parameter["AllowedValues"]], item
            if "AllowedPattern" in parameter:
                assert re.fullmatch(parameter["AllowedPattern"], value), item


#: Each setting the functions read from a template parameter: (variable, parameter,
#: the MirrorSettings / RepositorySettings field whose default the parameter repeats).
TUNABLES = [("ECR_MIRROR_PREFIX", "RepositoryPrefix", "prefix"),
            ("ECR_MIRROR_CONCURRENCY", "CopyConcurrency", "concurrency"),
            ("ECR_MIRROR_STOP_MARGIN_SECONDS", "StopMarginSeconds", "stop_margin"),
            ("ECR_MIRROR_SCAN_ON_PUSH", "ScanOnPush", "repository.scan_on_push"),
            ("ECR_MIRROR_TAG_MUTABILITY", "TagMutability", "repository.tag_mutability"),
            ("ECR_MIRROR_UNTAGGED_EXPIRY_DAYS", "UntaggedExpiryDays",
             "repository.untagged_expiry_days")]


@pytest.mark.parametrize("variable, parameter, setting", TUNABLES)
def test_tunables_are_parameters_whose_defaults_are_the_settings(template, variable, parameter,
                                                                 setting):
    """A tunable is a template parameter passed through one variable, never a value
    written into the template; its default is the code's default."""
    settings = pytest.importorskip("ecr_mirror.settings")
    environments = [function_environment(template, f) for f in ("SchedulerFunction", "WorkerFunction")]
    assert {"Ref": parameter} in [env.get(variable) for env in environments]
    passed = [name for env in environments for name, value in env.items() if value == {"Ref": parameter}]
    assert set(passed) == {variable}, passed
    default = settings.MirrorSettings.from_env({})  # what the code uses when nothing is set
    for part in setting.split("."):
        default = getattr(default, part)
    given = template["Parameters"][parameter]["Default"]
    assert settings.MirrorSettings.from_env({variable: str(given)}) == settings.MirrorSettings.from_env({})
    assert str(given).lower() == str(default).lower().removesuffix(".0")


def test_no_function_hard_codes_a_setting(template):
    """Every ECR_MIRROR_ variable comes from a parameter or a resource of the stack."""
    for function in ("SchedulerFunction", "WorkerFunction"):
        for name, value in function_environment(template, function).items():
            if name.startswith("ECR_MIRROR_"):
                assert _from_the_stack(value), (function, name)


def _from_the_stack(value) -> bool:
    """A parameter or resource of the stack, possibly chosen by a condition
    (Fn::If) or spelled into a URL (Fn::Sub of such values); "" for none."""
    if value == "":
        return True
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key, arg), = value.items()
    if key in ("Ref", "Fn::GetAtt"):
        return True
    if key == "Fn::If":
        return all(_from_the_stack(branch) for branch in arg[1:])
    if key == "Fn::Sub" and isinstance(arg, list):
        return all(_from_the_stack(v) for v in arg[1].values())
    return False


def test_untagged_expiry_is_a_number_of_days_zero_meaning_none(template):
    parameter = template["Parameters"]["UntaggedExpiryDays"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 14, 0)
