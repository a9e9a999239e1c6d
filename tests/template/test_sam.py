"""The SAM CLI on the real template: `sam validate --lint`, the template as
CloudFormation receives it (SAM's own additions included), and `sam build` with
what it puts in each artifact.

The SAM CLI lives in .venv-sam (its boto3 pin conflicts with the project's);
`make test` creates it before running pytest. Without it these tests are skipped.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
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
                  "fastjsonschema", "aws_xray_sdk", "cryptography"]
# What the python3.13 runtime provides: boto3 and its dependencies. The layer must not
# shadow them (the X-Ray SDK imports botocore, Powertools jmespath: the runtime's).
RUNTIME_PACKAGES = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six"]
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
    """`sam build` into .aws-sam/build as `make sam-build` does, one run at a time.

    SAM's cache would hand back a layer built by an older recipe (it keys the layer on
    layers/deps/, and the recipe is in the Makefile): it is emptied first."""
    if python313_bin() is None:
        pytest.fail("sam build needs python3.13 (the Lambda runtime) on PATH, in "
                    "~/.pyenv/versions/3.13*/bin or in PY313_BIN; `pyenv install 3.13`")
    BUILD_DIR.parent.mkdir(exist_ok=True)
    with open(BUILD_DIR.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `make test` in this checkout waits here
        shutil.rmtree(BUILD_DIR.parent / "cache", ignore_errors=True)
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
    # Sources and their bytecode for python3.13, nothing else.
    unwanted = [str(p.relative_to(artifact)) for p in artifact.rglob("*")
                if p.is_file() and p.suffix != ".py"
                and not (p.parent.name == "__pycache__" and p.name.endswith(".cpython-313.pyc"))]
    unwanted += [str(p.relative_to(artifact)) for p in artifact.rglob("*")
                 if p.name == "tests" or p.name.endswith(".egg-info")]
    assert unwanted == []


CHECK_BYTECODE = r"""
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
sources = sorted(root.rglob("*.py"))
problems = []
for py in sources:
    pyc = pathlib.Path(importlib.util.cache_from_source(str(py)))
    if not pyc.is_file():
        problems.append(f"{py}: no {pyc.name}")
        continue
    data = pyc.read_bytes()
    if data[:4] != importlib.util.MAGIC_NUMBER:
        problems.append(f"{pyc}: not for python {sys.version.split()[0]}")
    elif int.from_bytes(data[4:8], "little") != 0b01:  # hash-based, source not checked
        problems.append(f"{pyc}: not unchecked-hash (flags {data[4:8].hex()})")
    elif data[8:16] != importlib.util.source_hash(py.read_bytes()):
        problems.append(f"{pyc}: compiled from another source")
expected = {pathlib.Path(importlib.util.cache_from_source(str(py))) for py in sources}
problems += [f"{pyc}: stray" for pyc in root.rglob("*.pyc") if pyc not in expected]
print(json.dumps({"sources": len(sources), "problems": problems}))
"""


@pytest.mark.parametrize("artifact", ["SchedulerFunction", "WorkerFunction", "DependenciesLayer"])
def test_built_code_ships_bytecode_for_python313(built, artifact):
    """/var/task and /opt are read-only on Lambda: code without valid bytecode is compiled
    at every cold start. Every .py has its cpython-313 .pyc in __pycache__, unchecked-hash
    (the zip's timestamps cannot invalidate it) and compiled from that very source."""
    result = subprocess.run([os.path.join(python313_bin(), "python3.13"), "-I", "-S", "-B",
                             "-c", CHECK_BYTECODE, str(built / artifact)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sources"] > 10
    assert report["problems"][:20] == []


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
    shadowing = [p for p in RUNTIME_PACKAGES if p in present or f"{p}.py" in present]
    assert shadowing == [], "the runtime provides these: the layer must not shadow them"
    assert "bin" not in present  # console scripts, of no use in a layer
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


IMPORT_BUILT_HANDLER = r"""
import importlib, importlib.machinery, json, sys
handler, paths = sys.argv[1], json.loads(sys.argv[2])  # PYTHONPATH, as a list
compiled = []  # sources of the function or the layer compiled at import: there should be none
to_code = importlib.machinery.SourceFileLoader.source_to_code
def source_to_code(self, data, path, *args, **kwargs):
    if path.startswith(tuple(paths[:2])):
        compiled.append(path)
    return to_code(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = source_to_code
module_name, _, name = handler.rpartition(".")
module = importlib.import_module(module_name)
assert callable(getattr(module, name)), handler
import aws_xray_sdk.core, botocore
aws_xray_sdk.core.patch(["botocore"])  # as Tracer does at import when tracing is on
print(json.dumps({"handler": module.__file__, "botocore": botocore.__file__,
                  "aws_xray_sdk": aws_xray_sdk.__file__, "compiled": compiled}))
"""


def runtime_stand_in(directory: Path) -> Path:
    """The python3.13 runtime's boto3 and its dependencies, which the layer leaves out:
    here the project venv's copies (the versions the tests run), alone in a directory."""
    directory.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, f"the test environment has no {name}"
        source = Path(spec.origin)
        if source.name == "__init__.py":
            source = source.parent
        (directory / source.name).symlink_to(source)
    return directory


@pytest.mark.parametrize("function", ["SchedulerFunction", "WorkerFunction"])
def test_built_handler_imports_in_python313(built, function, tmp_path):
    """The artifact and the layer are enough to load the handler in the runtime's Python,
    with the runtime's own boto3/botocore after them on the import path, as on Lambda (here a
    stand-in: the project venv's, which the layer must not need to shadow). Nothing else
    (no site-packages: -S), nothing written (-B), and nothing of the function or the
    layer compiled: the shipped .pyc are used as they are."""
    handler = load_template(built / "template.yaml")["Resources"][function]["Properties"]["Handler"]
    runtime = runtime_stand_in(tmp_path / "runtime")
    paths = [str(built / function), str(built / "DependenciesLayer" / "python"), str(runtime)]
    # As Lambda sets it up, tracing on (Tracing: Active): Tracer patches at import.
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
           "AWS_LAMBDA_FUNCTION_NAME": function, "LAMBDA_TASK_ROOT": str(built / function),
           "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Sampled=0",
           "ECR_MIRROR_CONFIG_PARAMETER": "/ecr-mirror/config",
           "ECR_MIRROR_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}
    env["PYTHONPATH"] = os.pathsep.join(paths)  # the import path, and nothing else (-P -s -S)
    result = subprocess.run([os.path.join(python313_bin(), "python3.13"), "-P", "-s", "-S", "-B", "-c",
                             IMPORT_BUILT_HANDLER, handler, json.dumps(paths)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["handler"].startswith(paths[0] + os.sep)
    assert loaded["aws_xray_sdk"].startswith(paths[1] + os.sep)
    assert loaded["botocore"].startswith(paths[2] + os.sep)
    assert loaded["compiled"] == []
