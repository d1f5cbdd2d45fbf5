"""Custom resource that removes what SageMaker AI leaves in the VPC after its domain is deleted.

SageMaker creates the domain's EFS file system (with mount targets) and two NFS security groups
outside the stack; they block the deletion of the subnets and the VPC. On Delete this resource
removes them (leftovers.py), polling until they are gone; Create and Update do nothing.

Order: the cleanup must run AFTER the domain is gone, so the template makes the DOMAIN depend on this
resource (`DependsOn: DomainCleanup` on the domain): CloudFormation then deletes the domain first,
this resource next, the subnets and VPC last. This resource must itself depend on the VPC (pass
VpcId with !Ref) and on the subnets (DependsOn), so it is deleted before them.
Because the domain depends on it, it cannot be given the domain's id (a circular dependency), so it
finds the leftovers by themselves, and only touches those of domains that no longer exist
(DescribeDomain says ResourceNotFound; a domain still Deleting is waited for).

Template wiring: `AWS::Serverless::Function` with `CodeUri: functions/domain_cleanup/`,
`Handler: app.handler`, `Runtime: python3.13`, `Timeout: 120`; the runtime's boto3 is enough.
Resource type: `Custom::SageMakerDomainCleanup`, `ServiceToken: !GetAtt <Function>.Arn`.

Properties:
  VpcId     required; the VPC the domain's leftovers are in
  DomainId  optional; restricts the cleanup to this domain (only usable where the domain does not
            depend on this resource)
Physical id: `sagemaker-leftovers-<VpcId>` (a new VpcId makes CloudFormation delete, hence clean,
the old one). Attributes: none.

IAM (the function's role; replace <...>; crhelper names its rules <LogicalId> + 8 characters):
  - Effect: Allow                      # finding leftovers: Describe* take no resource ARNs
    Action: [ec2:DescribeSecurityGroups, elasticfilesystem:DescribeFileSystems,
             elasticfilesystem:DescribeMountTargets]
    Resource: '*'
  - Effect: Allow                      # only security groups in this VPC
    Action: [ec2:RevokeSecurityGroupIngress, ec2:RevokeSecurityGroupEgress, ec2:DeleteSecurityGroup]
    Resource: !Sub arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:security-group/*
    Condition: {ArnEquals: {ec2:Vpc: !Sub 'arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc/${VpcId}'}}
  - Effect: Allow                      # only file systems SageMaker made for a domain
    Action: [elasticfilesystem:DeleteMountTarget, elasticfilesystem:DeleteFileSystem]
    Resource: !Sub arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/*
    Condition: {StringLike: {aws:ResourceTag/ManagedByAmazonSageMakerResource:
                !Sub 'arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:domain/*'}}
  - Effect: Allow                      # DeleteMountTarget removes the mount target's interface
    Action: ec2:DeleteNetworkInterface
    Resource: !Sub arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:network-interface/*
    Condition: {ArnEquals: {ec2:Vpc: !Sub 'arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc/${VpcId}'}}
  - Effect: Allow
    Action: sagemaker:DescribeDomain
    Resource: !Sub arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:domain/*
  - Effect: Allow                      # crhelper's polling schedule
    Action: [events:PutRule, events:PutTargets, events:RemoveTargets, events:DeleteRule]
    Resource: !Sub arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/<LogicalId>*
  - Effect: Allow                      # ...which invokes this function
    Action: [lambda:AddPermission, lambda:RemovePermission]
    Resource: !Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:<FunctionName>
"""

import boto3
from crhelper import CfnResource

if __package__:  # imported as domain_cleanup.app (tests); Lambda loads app.py from the code root
    from . import leftovers
else:
    import leftovers

POLLING_MINUTES = 1


def build_helper(ec2=None, efs=None, sagemaker=None, **crhelper_options) -> CfnResource:
    """The crhelper resource with its handlers; tests pass stubbed clients and crhelper options."""
    helper = CfnResource(log_level="INFO", polling_interval=POLLING_MINUTES, **crhelper_options)
    try:
        ec2 = ec2 or boto3.client("ec2")
        efs = efs or boto3.client("efs")
        sagemaker = sagemaker or boto3.client("sagemaker")
    except Exception as error:  # reported to CloudFormation at once, not after an hour's wait
        helper.init_failure(error)

    def physical_id(event):
        vpc_id = event["ResourceProperties"].get("VpcId")
        if not vpc_id:
            raise ValueError("Missing required property VpcId: the VPC the SageMaker domain is in.")
        return f"sagemaker-leftovers-{vpc_id}"

    @helper.create
    @helper.update
    def record(event, _context):
        return physical_id(event)

    @helper.delete
    @helper.poll_delete
    def remove(event, _context):
        properties = event["ResourceProperties"]
        if not properties.get("VpcId"):
            return event["PhysicalResourceId"]  # a create that failed: nothing was recorded
        finished = leftovers.remove_leftovers(ec2, efs, sagemaker, properties["VpcId"],
                                              properties.get("DomainId") or None)
        return event["PhysicalResourceId"] if finished else None

    return helper


helper = build_helper()


def handler(event, context):
    helper(event, context)
