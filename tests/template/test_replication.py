"""`ReplicateToRegions` (issue 13, item 4): ECR registry replication of the
repositories under the prefix, only when the parameter is set.

The template is resolved here for given parameter values, as CloudFormation
would (conditions, Fn::If, Fn::Select over the list), so each test reads the
replication rule a stack with those values would put in the account."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .cfn import load_template
from .test_sam import deployed_template  # noqa: F401 - a fixture

ACCOUNT = "123456789012"
NO_VALUE = object()


class Stack:
    """The template with parameters given (a CommaDelimitedList is a list)."""

    def __init__(self, **parameters: Any) -> None:
        self.template = load_template()
        self.parameters = {name: p.get("Default", "") for name, p in self.template["Parameters"].items()}
        for name, p in self.template["Parameters"].items():
            if p["Type"] == "CommaDelimitedList" and isinstance(self.parameters[name], str):
                self.parameters[name] = self.parameters[name].split(",")
        self.parameters.update(parameters, **{"AWS::AccountId": ACCOUNT, "AWS::Region": "us-east-1"})

    def resource(self, name: str) -> dict[str, Any] | None:
        """The resource's resolved properties; None when its condition leaves it out."""
        resource = self.template["Resources"][name]
        if "Condition" in resource and not self.condition(resource["Condition"]):
            return None
        return self.resolve(resource["Properties"])

    def condition(self, node: Any) -> bool:
        node = self.template["Conditions"][node] if isinstance(node, str) else node
        (key, arg), = node.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            return self.resolve(arg[0]) == self.resolve(arg[1])
        if key == "Fn::Not":
            return not self.condition(arg[0])
        if key in ("Fn::And", "Fn::Or"):
            return (all if key == "Fn::And" else any)(self.condition(a) for a in arg)
        raise NotImplementedError(key)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(v) for v in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.parameters[arg]
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Join":
                return arg[0].join(self.resolve(arg[1]))
            if key == "Fn::Split":
                return self.resolve(arg[1]).split(arg[0])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(arg[0])]  # IndexError: CloudFormation fails too
            if key == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.parameters[m.group(1)]), arg)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}


def rules(**parameters: Any) -> list[dict[str, Any]] | None:
    resolved = Stack(**parameters).resource("ReplicationConfiguration")
    return None if resolved is None else resolved["ReplicationConfiguration"]["Rules"]


def here(*regions: str) -> list[dict[str, str]]:
    return [{"Region": r, "RegistryId": ACCOUNT} for r in regions]


def test_nothing_is_replicated_by_default():
    assert load_template()["Parameters"]["ReplicateToRegions"]["Default"] == ""
    assert rules() is None
    assert rules(ReplicateToRegions=[""]) is None


@pytest.mark.parametrize("regions", [["eu-west-1"], ["eu-west-1", "us-west-2", "ap-southeast-2"],
                                     ["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "us-west-2"]])
def test_one_rule_replicates_the_prefix_to_each_region_in_this_account(regions):
    assert rules(ReplicateToRegions=regions, RepositoryPrefix="team/mirror") == [
        {"Destinations": here(*regions),
         # The prefix and its slash: `team/mirror` must not also match `team/mirrored/...`.
         "RepositoryFilters": [{"Filter": "team/mirror/", "FilterType": "PREFIX_MATCH"}]}]


def test_a_sixth_region_fails_the_deployment_instead_of_being_dropped():
    six = ["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "us-west-2", "ap-south-1"]
    destinations = rules(ReplicateToRegions=six)[0]["Destinations"]
    assert "ap-south-1" not in [d["Region"] for d in destinations]
    assert [d["Region"] for d in destinations if d["Region"] not in six] == ["at-most-5-regions"]


def test_the_parameter_warns_that_it_replaces_the_accounts_configuration():
    description = load_template()["Parameters"]["ReplicateToRegions"]["Description"]
    assert "REPLACES" in description and "README" in description and "5" in description


def test_the_deployed_template_keeps_the_conditional_replication(deployed_template):
    resource = deployed_template["Resources"]["ReplicationConfiguration"]
    assert resource["Type"] == "AWS::ECR::ReplicationConfiguration"
    assert resource["Condition"] == "Replicates"
    assert "Replicates" in deployed_template["Conditions"]
