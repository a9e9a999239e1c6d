"""Reading template.yaml and its IAM statements, for the template tests.

CloudFormation's short tags (`!Ref X`, `!Sub "..."`, `!GetAtt A.B`, `!If [...]`)
become their long forms (`{"Ref": "X"}`, `{"Fn::Sub": ...}`, ...), as
CloudFormation itself reads them.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAM_VENV = REPO / ".venv-sam"
SAM = SAM_VENV / "bin" / "sam"


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long forms."""


def _construct_cfn_tag(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=CfnLoader)  # a SafeLoader


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def function_property(template: dict[str, Any], name: str, prop: str) -> Any:
    """A function's property, falling back to Globals.Function as SAM does."""
    props = template["Resources"][name].get("Properties", {})
    if prop in props:
        return props[prop]
    return template.get("Globals", {}).get("Function", {}).get(prop)


def function_environment(template: dict[str, Any], name: str) -> dict[str, Any]:
    merged = dict(template.get("Globals", {}).get("Function", {})
                  .get("Environment", {}).get("Variables", {}))
    merged.update(template["Resources"][name].get("Properties", {})
                  .get("Environment", {}).get("Variables", {}))
    return merged


def _branches(node: Any) -> Iterator[Any]:
    """Both branches of every Fn::If: a statement counts whichever way it resolves."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, when_true, when_false = node["Fn::If"]
        yield from _branches(when_true)
        yield from _branches(when_false)
    else:
        yield node


def iam_statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement anywhere below node, with where it was found."""
    for branch in _branches(node):
        if isinstance(branch, dict):
            for key, value in branch.items():
                if key == "Statement":
                    for candidate in _branches(value):
                        for statement in candidate if isinstance(candidate, list) else [candidate]:
                            for s in _branches(statement):
                                if isinstance(s, dict) and ("Action" in s or "NotAction" in s):
                                    yield where, s
                else:
                    yield from iam_statements(value, f"{where}/{key}")
        elif isinstance(branch, list):
            for i, item in enumerate(branch):
                yield from iam_statements(item, f"{where}[{i}]")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


ECR_READ_PREFIXES = ("Describe", "BatchGet", "BatchCheck", "List", "Get")


def ecr_write_actions(statement: dict[str, Any]) -> list[str]:
    """The ECR actions of an Allow statement that are not read-only (`ecr:*` counts)."""
    if statement.get("Effect") != "Allow":
        return []
    if "NotAction" in statement:  # allows everything but a list: may include ECR writes
        return [f"NotAction {statement['NotAction']}"]
    writes = []
    for action in as_list(statement["Action"]):
        if not isinstance(action, str):
            writes.append(str(action))  # an intrinsic: cannot tell, so do not trust it
            continue
        service, _, name = action.partition(":")
        if service.lower() in ("ecr", "*") and not name.startswith(ECR_READ_PREFIXES):
            writes.append(action)
    return writes


def grants_on_any_resource(statement: dict[str, Any]) -> bool:
    if "NotResource" in statement:
        return True
    return any(r == "*" for r in as_list(statement.get("Resource", [])))


# ---------------------------------------------------------------- tools on this machine

def python313_bin() -> str | None:
    """The directory holding python3.13, found the way the Makefile finds it."""
    candidates = []
    if os.environ.get("PY313_BIN"):
        candidates.append(os.environ["PY313_BIN"])
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.13*", "bin")),
                         reverse=True)
    found = shutil.which("python3.13")
    if found:
        candidates.append(os.path.dirname(found))
    for directory in candidates:
        if os.access(os.path.join(directory, "python3.13"), os.X_OK):
            return directory
    return None


def sam_env() -> dict[str, str]:
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    bin_dir = python313_bin()
    if bin_dir:
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env
