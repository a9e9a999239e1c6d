"""The SAM CLI on the real template: `sam validate --lint`, the template as
CloudFormation receives it (SAM's own additions included), and `sam build` with
what it puts in each artifact.

The SAM CLI lives in .venv-sam (its boto3 pin conflicts with the project's);
`make test` creates it before running pytest. Without it these tests are skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from .cfn import (
    REPO,
    SAM,
    SAM_VENV,
    as_list,
    ecr_write_actions,
    grants_on_any_resource,
    iam_statements,
    load_template,
    python313_bin,
    sam_env,
)

pytestmark = pytest.mark.skipif(
    not SAM.exists(), reason=f"no SAM CLI at {SAM.relative_to(REPO)}: `make test` (or "
                             "`make sam-validate`) creates .venv-sam")

BUILD_DIR = REPO / ".aws-sam" / "build"
LAYER_PACKAGES = ["requests", "tenacity", "aws_lambda_powertools", "yaml", "semver",
                  "fastjsonschema", "aws_xray_sdk", "boto3", "botocore"]
ELF_MACHINE = {b"\xb7\x00": "arm64", b"\x3e\x00": "x86_64"}

TRANSLATE = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():  # as `sam deploy` uploads them
    props = resource.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if key in props:
            props[key] = "s3://bucket/" + key
class NoManagedPolicies:
    def load(self):
        return {}
json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout)
"""


def run_sam(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(SAM), *args], cwd=REPO, env=sam_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_sam_validate_lint():
    result = run_sam("validate", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def deployed_template() -> dict:
    """template.yaml after the SAM transform: what CloudFormation gets."""
    env = dict(sam_env(), AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run([str(SAM_VENV / "bin" / "python"), "-c", TRANSLATE, "template.yaml"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_transformed_template_grants_no_ecr_writes_on_any_resource(deployed_template):
    statements = list(iam_statements(deployed_template))
    assert len(statements) >= 10
    assert [w for w, s in statements if ecr_write_actions(s) and grants_on_any_resource(s)] == []


def test_transformed_roles_have_no_broad_managed_policies(deployed_template):
    roles = {name: r["Properties"] for name, r in deployed_template["Resources"].items()
             if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == {"SchedulerFunctionRole", "WorkerFunctionRole",
                          "SchedulerFunctionScheduleRole"}
    allowed = {"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
               "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}
    for name, role in roles.items():
        assert set(role.get("ManagedPolicyArns", [])) <= allowed, name
    # No SQS action on "*" (SAM's SQS event would add AWSLambdaSQSQueueExecutionRole).
    for where, statement in iam_statements(deployed_template):
        if any(str(a).startswith("sqs:") for a in as_list(statement["Action"])):
            assert not grants_on_any_resource(statement), where


def test_schedule_role_may_only_invoke_the_scheduler(deployed_template):
    role = deployed_template["Resources"]["SchedulerFunctionScheduleRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [{"Action": "lambda:InvokeFunction", "Effect": "Allow",
                           "Resource": {"Fn::GetAtt": ["SchedulerFunction", "Arn"]}}]
    schedule = deployed_template["Resources"]["SchedulerFunctionSchedule"]["Properties"]
    assert schedule["Target"]["RoleArn"] == {"Fn::GetAtt": ["SchedulerFunctionScheduleRole", "Arn"]}
    assert schedule["Name"] == {"Fn::Sub": "${AWS::StackName}-plan"}


# ---------------------------------------------------------------- sam build

@pytest.fixture(scope="module")
def built() -> Path:
    """`sam build` into .aws-sam/build (cached, as `make sam-build` does), one run at a time."""
    if python313_bin() is None:
        pytest.fail("sam build needs python3.13 (the Lambda runtime) on PATH, in "
                    "~/.pyenv/versions/3.13*/bin or in PY313_BIN; `pyenv install 3.13`")
    BUILD_DIR.parent.mkdir(exist_ok=True)
    with open(BUILD_DIR.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `make test` in this checkout waits here
        result = run_sam("build", "--build-dir", str(BUILD_DIR.relative_to(REPO)))
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        yield BUILD_DIR


def _architecture() -> str:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    for item in config["default"]["build"]["parameters"].get("parameter_overrides", []):
        key, _, value = item.partition("=")
        if key == "Architecture":
            return value.strip('"')
    return "arm64"


@pytest.mark.parametrize("function", ["SchedulerFunction", "WorkerFunction"])
def test_function_artifact_is_the_package_alone(built, function):
    artifact = built / function
    assert sorted(os.listdir(artifact)) == ["ecr_mirror"]
    assert (artifact / "ecr_mirror" / "handlers" / "worker.py").is_file()
    unwanted = [str(p.relative_to(artifact)) for p in artifact.rglob("*")
                if p.name in ("__pycache__", "tests") or p.name.endswith((".egg-info", ".pyc"))]
    assert unwanted == []


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "layers" / "deps" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"layers/deps/requirements.txt: pin {line!r} with =="
            pins[re.sub(r"[-_.]+", "_", name).lower()] = version
    return pins


def test_layer_holds_exactly_the_pinned_distributions(built):
    python = built / "DependenciesLayer" / "python"
    present = set(os.listdir(python))
    assert [p for p in LAYER_PACKAGES if p not in present] == []
    installed = {}
    for info in python.glob("*.dist-info"):
        name, version = info.name[:-len(".dist-info")].rsplit("-", 1)
        installed[re.sub(r"[-_.]+", "_", name).lower()] = version
    # Every dependency is pinned: nothing unpinned slipped in, nothing is missing.
    assert installed == _pins()


def test_layer_extensions_are_for_the_architecture(built):
    extensions = list((built / "DependenciesLayer" / "python").rglob("*.so"))
    assert extensions, "expected compiled extensions (PyYAML, charset-normalizer, wrapt)"
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF"
        assert ELF_MACHINE.get(header[18:20]) == _architecture(), extension


@pytest.mark.parametrize("function", ["SchedulerFunction", "WorkerFunction"])
def test_built_handler_imports_in_python313(built, function, tmp_path):
    """The artifact and the layer alone are enough to load the handler in the runtime's
    Python: no site-packages (-S), nothing written (-B)."""
    handler = load_template(built / "template.yaml")["Resources"][function]["Properties"]["Handler"]
    module, _, name = handler.rpartition(".")
    paths = [built / function, built / "DependenciesLayer" / "python"]
    code = (f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}; "
            f"import importlib; m = importlib.import_module({module!r}); "
            f"assert callable(getattr(m, {name!r})); print(m.__file__)")
    # As Lambda sets it up, tracing on (Tracing: Active): Tracer patches at import.
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
           "AWS_LAMBDA_FUNCTION_NAME": function, "LAMBDA_TASK_ROOT": str(built / function),
           "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Sampled=0",
           "ECR_MIRROR_CONFIG_PARAMETER": "/ecr-mirror/config",
           "ECR_MIRROR_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}
    result = subprocess.run([os.path.join(python313_bin(), "python3.13"), "-I", "-S", "-B", "-c", code],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(built / function))
