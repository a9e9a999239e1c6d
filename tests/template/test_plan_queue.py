"""PlanQueue: the planning shards' queue, its event source and its dead letters."""

from __future__ import annotations

from ecr_mirror import queue
from ecr_mirror.handlers.shards import PLAN_QUEUE_ENV

from .cfn import function_environment, iam_statements, load_template, resources

TEMPLATE = load_template()


def test_shards_come_back_to_the_scheduler_one_per_invocation_with_partial_failures():
    (mapping,) = [m["Properties"] for m in resources(TEMPLATE, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["PlanQueue", "Arn"]}]
    assert mapping["FunctionName"] == {"Ref": "SchedulerFunction"}
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    env = function_environment(TEMPLATE, "SchedulerFunction")
    assert env[PLAN_QUEUE_ENV] == {"Ref": "PlanQueue"}
    assert env["ECR_MIRROR_PLAN_SHARD_TAGS"] == {"Ref": "PlanShardTags"}


def test_a_shard_failing_three_times_is_parked_encrypted_and_alarmed():
    plan = TEMPLATE["Resources"]["PlanQueue"]["Properties"]
    timeout = TEMPLATE["Resources"]["SchedulerFunction"]["Properties"]["Timeout"]
    assert plan["VisibilityTimeout"] >= 6 * timeout and plan["SqsManagedSseEnabled"] is True
    # The shard's last receive (it then queues what it planned) is the one before the DLQ.
    assert plan["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["PlanDeadLetterQueue", "Arn"]},
                                     "maxReceiveCount": queue.MAX_RECEIVES}
    assert TEMPLATE["Resources"]["PlanDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    alarm = TEMPLATE["Resources"]["PlanDeadLetterQueueAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["PlanDeadLetterQueue", "QueueName"]}}]
    assert (alarm["MetricName"], alarm["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 0)


def test_only_the_scheduler_touches_plan_queue():
    on_plan = {where.split("/")[1] for where, s in iam_statements(TEMPLATE["Resources"])
               if s.get("Resource") == {"Fn::GetAtt": ["PlanQueue", "Arn"]}}
    assert on_plan == {"SchedulerFunction"}, on_plan
