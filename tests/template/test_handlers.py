"""Every `Handler` in template.yaml names a function that imports, as Lambda would
load it: in a fresh process, with the function's environment variables set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .cfn import REPO, function_environment, load_template, resources

TEMPLATE = load_template()
FUNCTIONS = sorted(resources(TEMPLATE, "AWS::Serverless::Function"))

# What the intrinsics in the environment resolve to in a deployed stack, roughly.
_PLACEHOLDERS = {
    "CopyQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/ecr-mirror-CopyQueue-x",
    "LeaseTable": "ecr-mirror-LeaseTable-x",
    "PlanQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/ecr-mirror-PlanQueue-x",
}

IMPORT_HANDLER = """
import importlib, json, sys
module_name, _, function_name = sys.argv[1].rpartition(".")
module = importlib.import_module(module_name)
handler = getattr(module, function_name)
assert callable(handler), f"{sys.argv[1]} is not callable"
print(json.dumps({"module": module.__file__}))
"""


def lambda_environment(function: str) -> dict[str, str]:
    """The function's variables, intrinsics resolved to defaults, plus what Lambda sets."""
    params = TEMPLATE["Parameters"]
    env = {}
    for name, value in function_environment(TEMPLATE, function).items():
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            value = str(params[ref]["Default"]) if ref in params else _PLACEHOLDERS[ref]
        env[name] = str(value)
    env.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_LAMBDA_FUNCTION_NAME=f"ecr-mirror-{function}",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               POWERTOOLS_TRACE_DISABLED="true")  # no X-Ray daemon here
    return env


@pytest.mark.parametrize("function", FUNCTIONS)
def test_handler_imports(function):
    handler = TEMPLATE["Resources"][function]["Properties"]["Handler"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ECR_MIRROR_", "POWERTOOLS_"))}
    env.update(lambda_environment(function))
    result = subprocess.run([sys.executable, "-c", IMPORT_HANDLER, handler], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{function}: Handler {handler} does not import:\n{result.stderr}"
    module_file = json.loads(result.stdout.strip().splitlines()[-1])["module"]
    assert "/src/ecr_mirror/" in module_file, module_file
