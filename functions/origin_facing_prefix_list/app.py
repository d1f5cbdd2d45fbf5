"""Custom resource that finds an AWS-managed prefix list's id by its name.

The load balancer behind CloudFront admits only CloudFront's origin-facing servers, the
AWS-managed prefix list `com.amazonaws.global.cloudfront.origin-facing`. A security group rule
needs that list's id, which differs from region to region, and CloudFormation has no lookup for
it (docs/before-first-deploy.md#the-access-path).

Template wiring: `AWS::Serverless::Function` with `CodeUri: functions/origin_facing_prefix_list/`,
`Handler: app.handler`, `Runtime: python3.13`; the runtime's boto3 is enough.
Resource type: `Custom::OriginFacingPrefixList`, `ServiceToken: !GetAtt <Function>.Arn`.

Properties:
  PrefixListName  required; the managed prefix list's name
Physical id: the prefix list's id (pl-...). Attributes: PrefixListId. Delete does nothing: the
list is AWS's.

IAM (the function's role): ec2:DescribeManagedPrefixLists on '*' (it takes no resource ARN).
"""

import boto3
from crhelper import CfnResource


class PrefixListNotFound(Exception):
    pass


def prefix_list_id(ec2, name: str) -> str:
    """The id of the managed prefix list called `name` in the client's region."""
    lists = ec2.describe_managed_prefix_lists(
        Filters=[{"Name": "prefix-list-name", "Values": [name]}]
    )["PrefixLists"]
    if len(lists) != 1:
        raise PrefixListNotFound(
            f"{len(lists)} managed prefix lists are named {name!r} in this region; expected one."
        )
    return lists[0]["PrefixListId"]


def build_helper(ec2=None, **crhelper_options) -> CfnResource:
    """The crhelper resource with its handlers; tests pass a stubbed client and crhelper options."""
    helper = CfnResource(log_level="INFO", **crhelper_options)
    try:
        ec2 = ec2 or boto3.client("ec2")
    except Exception as error:  # reported to CloudFormation at once, not after an hour's wait
        helper.init_failure(error)

    @helper.create
    @helper.update
    def find(event, _context):
        name = event["ResourceProperties"].get("PrefixListName")
        if not name:
            raise ValueError("Missing required property PrefixListName.")
        found = prefix_list_id(ec2, name)
        helper.Data["PrefixListId"] = found
        return found

    @helper.delete
    def forget(event, _context):
        return event["PhysicalResourceId"]

    return helper


helper = build_helper()


def handler(event, context):
    helper(event, context)
