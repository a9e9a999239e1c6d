"""IAM as AWS enforces it, around every botocore call the code under test makes.

AWS's emulator (moto) lets any credentials do anything, so a call that the
deployed role does not allow passes every test and fails on the first day in
AWS. Here each call is checked against a role's policy *before* it is sent:

    roles = StackRoles(resources={"CopyQueue": {...}, "LeaseTable": {...}})
    with IamEnforcer() as iam:
        with iam.acting_as("WorkerFunction", roles.statements("WorkerFunction")):
            worker.handler(event, context)      # the real code, its own boto3 clients
    iam.assert_clean()                          # no call denied, none unknown

- The policies are the ones SAM generates: template.yaml goes through the SAM
  translator (offline), the function's `<Function>Role` is taken from the result,
  and the intrinsics left in it (Fn::Sub, Ref, Fn::GetAtt, Fn::If) are resolved to
  the names and ARNs of the resources the test created on the emulator.
- Every call made while a role is active (any client, any thread) is mapped to the
  IAM action(s) AWS authorizes it as and the resource ARN it is authorized on
  (`OPERATIONS`, from the Service Authorization Reference), and evaluated with
  moto's policy statement logic (Effect, Action/NotAction, Resource; an explicit
  Deny wins) with IAM's wildcard matching (`*`, `?`, actions case-insensitive).
- A denied call raises the service's own AccessDenied `ClientError`, as AWS
  does, so the code's error handling runs; it is also recorded, and
  `assert_clean()` fails naming the function, action, resource and operation,
  even where the code swallowed the error.
- An operation missing from `OPERATIONS` is recorded as unknown and fails
  `assert_clean()` too: a new AWS call cannot slip by without its grant being
  checked. Add it to the table with its action and resource.

Not modelled: conditions (a statement with a Condition is refused loudly),
resource-based policies (queue and key policies), permission boundaries, and the
calls AWS services make on the role's behalf (KMS through ECR).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.client import BaseClient
from moto.iam.access_control import IAMPolicyStatement, PermissionResult


def _repository() -> Path:
    """The checkout whose template.yaml is checked: the one this package is in (the dev
    install is editable), else the one the working directory is in."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for directory in (start, *start.parents):
            if (directory / "pyproject.toml").is_file() and (directory / "template.yaml").is_file():
                return directory
    raise RuntimeError("no ecr-mirror checkout (pyproject.toml and template.yaml) above "
                       f"{Path(__file__).parent} or {Path.cwd()}")


REPO = _repository()
TEMPLATE = REPO / "template.yaml"
ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"


# ---------------------------------------------------------------- the roles SAM generates

@functools.cache
def translated_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as CloudFormation receives it after SAM's transform."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(path.read_text())
    for resource in template["Resources"].values():  # as `sam deploy` uploads them
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = f"s3://bucket/{key}"

    class NoManagedPolicyNames:  # the template names managed policies by ARN only
        def load(self) -> dict[str, str]:
            return {}

    # The translator asks boto3 for a region (it resolves nothing with it here).
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        return transform(template, {}, NoManagedPolicyNames())
    finally:
        if saved is None:
            del os.environ["AWS_DEFAULT_REGION"]
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved


_NO_VALUE = object()


class StackRoles:
    """The translated template's roles, resolved for one emulated stack.

    `resources` maps a logical id to what CloudFormation would give for it:
    {"Ref": physical id, "Arn": ..., "QueueName": ...}; None gives every
    resource a placeholder (to list the actions alone). `parameters` override
    the template's defaults.
    """

    def __init__(self, resources: dict[str, dict[str, str]] | None,
                 parameters: dict[str, str] | None = None, *, region: str = REGION,
                 account: str = ACCOUNT, stack_name: str = "ecr-mirror") -> None:
        self.template = translated_template()
        self.resources = resources
        self.parameters = {name: str(p.get("Default", ""))
                           for name, p in self.template.get("Parameters", {}).items()}
        self.parameters.update(parameters or {})
        self.parameters.update({"AWS::Partition": "aws", "AWS::Region": region,
                                "AWS::AccountId": account, "AWS::StackName": stack_name,
                                "AWS::URLSuffix": "amazonaws.com"})

    def environment(self, function: str) -> dict[str, str]:
        """The function's environment variables (Globals merged in by SAM), resolved."""
        props = self.template["Resources"][function]["Properties"]
        return {k: str(v) for k, v in
                self.resolve(props.get("Environment", {}).get("Variables", {})).items()}

    def statements(self, function: str) -> list[dict[str, Any]]:
        """Every statement of the function's role's inline policies, resolved,
        with Action/Resource as lists."""
        role = self.template["Resources"][f"{function}Role"]["Properties"]
        out = []
        for policy in self.resolve(role.get("Policies", [])):
            for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                statement = dict(statement)
                for key in ("Action", "NotAction", "Resource"):
                    if key in statement:
                        statement[key] = _as_list(statement[key])
                out.append(statement)
        return out

    def resolve(self, node: Any) -> Any:
        """CloudFormation's intrinsic functions, evaluated."""
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._resource(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::Join":
                return arg[0].join(self.resolve(arg[1]))
            if key == "Fn::Split":
                return self.resolve(arg[1]).split(arg[0])
            if key == "Fn::Select":  # past the end: IndexError, as CloudFormation fails too
                return self.resolve(arg[1])[int(arg[0])]
            if key.startswith("Fn::") or key == "Condition":
                raise NotImplementedError(f"intrinsic {key} is not resolved here: {node}")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def condition(self, name_or_node: Any) -> bool:
        node = (self.template["Conditions"][name_or_node] if isinstance(name_or_node, str)
                else name_or_node)
        (key, arg), = node.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.condition(arg[0])
        if key == "Fn::And":
            return all(self.condition(a) for a in arg)
        if key == "Fn::Or":
            return any(self.condition(a) for a in arg)
        raise NotImplementedError(f"condition {key} is not evaluated here")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        return self._resource(name, "Ref")

    def _resource(self, logical: str, attribute: str) -> str:
        if self.resources is None:
            return f"<{logical}.{attribute}>"
        try:
            return self.resources[logical][attribute]
        except KeyError:
            raise KeyError(f"the test stack gives no {logical}.{attribute}: add it to the "
                           "resources passed to StackRoles") from None

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self._resource(*name.split(".", 1))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- evaluating a request

def _glob(pattern: str) -> str:
    """IAM's wildcards: `*` any run of characters, `?` any one; the rest literal."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


class Statement(IAMPolicyStatement):
    """moto's statement evaluation, with IAM's matching: wildcards only, the
    whole string, actions case-insensitive (moto's own uses `re.match` on the
    raw pattern, so `.` matches anything and `?` is not a wildcard)."""

    UNSUPPORTED = frozenset({"NotResource", "Principal", "NotPrincipal", "Condition"})

    def __init__(self, statement: dict[str, Any]) -> None:
        unsupported = self.UNSUPPORTED & set(statement)
        if unsupported:  # moto would mis-evaluate these (NotResource allows everything)
            raise NotImplementedError(f"{sorted(unsupported)} in {statement}: not evaluated here")
        super().__init__(statement)

    def _check_element_matches(self, statement_element: str, value: str) -> bool:
        flags = re.IGNORECASE if statement_element in ("Action", "NotAction") else 0
        return any(re.fullmatch(_glob(p), value, flags) is not None
                   for p in _as_list(self._statement[statement_element]))


def decide(statements: list[dict[str, Any]], action: str, resource: str) -> str:
    """"allowed", "explicitly denied" or "not allowed" (IAM's implicit deny)."""
    allowed = False
    for s in statements:
        result = Statement(s).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return "explicitly denied"
        allowed = allowed or result == PermissionResult.PERMITTED
    return "allowed" if allowed else "not allowed"


# ---------------------------------------------------------------- what a call needs

@dataclass(frozen=True)
class Target:
    """Where a call lands: the client's region/partition, the request's parameters."""
    partition: str
    region: str
    account: str
    params: dict[str, Any]
    lookup_secret_arn: Callable[[str], str | None]

    def arn(self, service: str, resource: str, account: str | None = None) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{account or self.account}:{resource}"


def _ecr_repository(t: Target) -> str:
    return t.arn("ecr", f"repository/{t.params['repositoryName']}", t.params.get("registryId"))


def _sqs_queue(t: Target) -> str:
    account, name = urlparse(t.params["QueueUrl"]).path.strip("/").split("/")[-2:]
    return t.arn("sqs", name, account)


def _ssm_parameter(t: Target) -> str:
    name = t.params["Name"]
    if name.startswith("arn:"):
        return name
    return t.arn("ssm", "parameter" + (name if name.startswith("/") else "/" + name))


def _s3_object(t: Target) -> str:
    return f"arn:{t.partition}:s3:::{t.params['Bucket']}/{t.params['Key']}"  # no region, no account


def _secret(t: Target) -> str:
    secret_id = t.params["SecretId"]
    if secret_id.startswith("arn:"):
        return secret_id
    # IAM sees the secret's full ARN (name + "-" + 6 random characters).
    return t.lookup_secret_arn(secret_id) or t.arn("secretsmanager", f"secret:{secret_id}")


def _dynamodb_table(t: Target) -> str:
    return t.arn("dynamodb", f"table/{t.params['TableName']}")


def _event_buses(t: Target) -> list[tuple[str, str]]:
    """PutEvents is authorized on the bus of each entry (no EventBusName: default)."""
    buses = [e.get("EventBusName") or "default" for e in t.params.get("Entries", [])]
    return [("events:PutEvents", bus if bus.startswith("arn:") else t.arn("events", f"event-bus/{bus}"))
            for bus in dict.fromkeys(buses)]


def _create_repository(t: Target) -> list[tuple[str, str]]:
    needed = [("ecr:CreateRepository", _ecr_repository(t))]
    if t.params.get("tags"):  # tagging on create is authorized as TagResource too
        needed.append(("ecr:TagResource", _ecr_repository(t)))
    return needed


def _one(action: str, resource: Callable[[Target], str]) -> Callable[[Target], list[tuple[str, str]]]:
    return lambda t: [(action, resource(t))]


#: (service, operation) -> the (IAM action, resource ARN) pairs AWS authorizes it as.
#: Exactly the operations the code makes; anything else is reported as unknown.
OPERATIONS: dict[tuple[str, str], Callable[[Target], list[tuple[str, str]]]] = {
    ("ecr", "BatchGetImage"): _one("ecr:BatchGetImage", _ecr_repository),
    ("ecr", "BatchCheckLayerAvailability"): _one("ecr:BatchCheckLayerAvailability", _ecr_repository),
    ("ecr", "CreateRepository"): _create_repository,
    ("ecr", "PutLifecyclePolicy"): _one("ecr:PutLifecyclePolicy", _ecr_repository),
    ("ecr", "InitiateLayerUpload"): _one("ecr:InitiateLayerUpload", _ecr_repository),
    ("ecr", "UploadLayerPart"): _one("ecr:UploadLayerPart", _ecr_repository),
    ("ecr", "CompleteLayerUpload"): _one("ecr:CompleteLayerUpload", _ecr_repository),
    ("ecr", "PutImage"): _one("ecr:PutImage", _ecr_repository),
    ("sqs", "SendMessage"): _one("sqs:SendMessage", _sqs_queue),
    ("sqs", "SendMessageBatch"): _one("sqs:SendMessage", _sqs_queue),  # no action of its own
    ("sqs", "ReceiveMessage"): _one("sqs:ReceiveMessage", _sqs_queue),
    ("sqs", "DeleteMessage"): _one("sqs:DeleteMessage", _sqs_queue),
    ("sqs", "ChangeMessageVisibility"): _one("sqs:ChangeMessageVisibility", _sqs_queue),
    ("sqs", "GetQueueAttributes"): _one("sqs:GetQueueAttributes", _sqs_queue),
    ("ssm", "GetParameter"): _one("ssm:GetParameter", _ssm_parameter),
    ("s3", "GetObject"): _one("s3:GetObject", _s3_object),
    ("secretsmanager", "GetSecretValue"): _one("secretsmanager:GetSecretValue", _secret),
    ("dynamodb", "PutItem"): _one("dynamodb:PutItem", _dynamodb_table),
    ("dynamodb", "DeleteItem"): _one("dynamodb:DeleteItem", _dynamodb_table),
    ("events", "PutEvents"): _event_buses,
    ("dynamodb", "UpdateItem"): _one("dynamodb:UpdateItem", _dynamodb_table),
    ("dynamodb", "GetItem"): _one("dynamodb:GetItem", _dynamodb_table),
    ("ecr", "BatchDeleteImage"): _one("ecr:BatchDeleteImage", _ecr_repository),
    # Account-level: IAM authorizes them on no resource ("*").
    ("ecr", "GetAuthorizationToken"): lambda t: [("ecr:GetAuthorizationToken", "*")],
    ("ecr", "GetAccountSetting"): lambda t: [("ecr:GetAccountSetting", "*")],
    ("dynamodb", "BatchGetItem"): lambda t: [("dynamodb:BatchGetItem", t.arn("dynamodb", f"table/{name}"))
                                             for name in t.params["RequestItems"]],
}

#: The error code each service answers a denied call with.
DENIED_CODE = {"sqs": "AccessDenied"}  # the others: AccessDeniedException


@dataclass(frozen=True)
class Denial:
    principal: str
    operation: str
    action: str
    resource: str
    why: str

    def __str__(self) -> str:
        return (f"{self.principal}: {self.action} on {self.resource} is {self.why} "
                f"(the call {self.operation})")


@dataclass
class IamEnforcer:
    """Checks every botocore call made while a role is active (see the module doc)."""

    account: str = ACCOUNT
    principal: str | None = None
    statements: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str, str, str]] = field(default_factory=list)  # principal, op, action, arn
    denials: list[Denial] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._original: Any = None

    def __enter__(self) -> IamEnforcer:
        self._original = original = BaseClient._make_api_call
        enforcer = self

        def _make_api_call(client, operation_name, api_params):
            enforcer._check(client, operation_name, api_params, original)
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = _make_api_call
        return self

    def __exit__(self, *exc: Any) -> None:
        BaseClient._make_api_call = self._original

    @contextmanager
    def acting_as(self, principal: str, statements: list[dict[str, Any]]) -> Iterator[None]:
        """Calls made inside (from any thread) are the role's; outside, the test's own."""
        for s in statements:
            Statement(s)  # unsupported elements fail here, before the run
        self.principal, self.statements = principal, statements
        try:
            yield
        finally:
            self.principal, self.statements = None, []

    def _check(self, client: BaseClient, operation: str, params: dict[str, Any],
               original: Callable) -> None:
        principal, statements = self.principal, self.statements
        if principal is None:
            return
        service = client.meta.service_model.service_name
        needs = OPERATIONS.get((service, operation))
        if needs is None:
            with self._lock:
                self.unknown.append(f"{principal}: {service}.{operation}")
            raise AssertionError(f"{service}.{operation} is not in testing/ecr_mirror_testing/iam.py OPERATIONS: "
                                 "add the IAM action and resource AWS authorizes it as")

        def lookup_secret_arn(name: str) -> str | None:
            try:
                return original(client, "DescribeSecret", {"SecretId": name})["ARN"]
            except client.exceptions.ClientError:
                return None

        target = Target(client.meta.partition, client.meta.region_name, self.account,
                        copy.copy(params), lookup_secret_arn)
        for action, resource in needs(target):
            why = decide(statements, action, resource)
            with self._lock:
                self.calls.append((principal, operation, action, resource))
            if why != "allowed":
                denial = Denial(principal, f"{service}.{operation}", action, resource, why)
                with self._lock:
                    self.denials.append(denial)
                code = DENIED_CODE.get(service, "AccessDeniedException")
                message = (f"User: arn:aws:sts::{self.account}:assumed-role/{principal}Role/{principal} "
                           f"is not authorized to perform: {action} on resource: {resource} because "
                           f"no identity-based policy allows the {action} action")
                error = {"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}
                raise client.exceptions.from_code(code)(error, operation)

    def authorize(self, operation: str, needs: list[tuple[str, str]]) -> bool:
        """A request that is no botocore call (ECR's registry endpoint: ecr_mount.py),
        checked like one: True when the active role allows every (action, resource)."""
        principal, statements = self.principal, self.statements
        if principal is None:
            return True
        allowed = True
        for action, resource in needs:
            why = decide(statements, action, resource)
            with self._lock:
                self.calls.append((principal, operation, action, resource))
                if why != "allowed":
                    self.denials.append(Denial(principal, operation, action, resource, why))
            allowed = allowed and why == "allowed"
        return allowed

    def actions_used(self, principal: str) -> set[str]:
        return {action for p, _, action, _ in self.calls if p == principal}

    def assert_clean(self) -> None:
        problems = [str(d) for d in self.denials] + [f"{u}: unknown to the IAM oracle"
                                                    for u in self.unknown]
        assert not problems, "AWS would refuse:\n  " + "\n  ".join(problems)
