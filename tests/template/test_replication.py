"""`ReplicateToRegions` (issue 13, item 4): ECR registry replication of the
repositories under the prefix, only when the parameter is set.

The template SAM translates is resolved for given parameter values, as
CloudFormation would (conditions, Fn::If, Fn::Select over the list: the IAM
harness's resolver), so each test reads the replication rule a stack with those
values would put in the account."""

from __future__ import annotations

from typing import Any

import pytest

from ecr_mirror_testing.iam import ACCOUNT, StackRoles, translated_template

from .cfn import load_template


def rules(**parameters: Any) -> list[dict[str, Any]] | None:
    """The replication rules a stack with these parameters puts in the account (a
    CommaDelimitedList given as a list); None when the stack has no replication."""
    stack = StackRoles(None, parameters)
    resource = stack.template["Resources"]["ReplicationConfiguration"]
    if not stack.condition(resource["Condition"]):
        return None
    return stack.resolve(resource["Properties"])["ReplicationConfiguration"]["Rules"]


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


def test_the_deployed_template_keeps_the_conditional_replication():
    deployed_template = translated_template()  # after SAM's transform: what CloudFormation gets
    resource = deployed_template["Resources"]["ReplicationConfiguration"]
    assert resource["Type"] == "AWS::ECR::ReplicationConfiguration"
    assert resource["Condition"] == "Replicates"
    assert "Replicates" in deployed_template["Conditions"]
