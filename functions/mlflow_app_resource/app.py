"""Custom resource for a SageMaker AI MLflow App (serverless MLflow), on crhelper.

Template wiring: `AWS::Serverless::Function` with `CodeUri: functions/mlflow_app_resource/`,
`Handler: app.handler`, `Runtime: python3.13`, `Timeout: 120` (every call is short: long waits
are crhelper polls, one a minute), `Layers: [the boto3 layer]` (boto3 >= 1.42.1 has the MLflow App
API; the runtime's may not). The resource's `DependsOn` should name the function's policy, so
deleting the stack does not take the permissions away before the app is deleted.

Resource type: `Custom::MlflowApp`, `ServiceToken: !GetAtt <Function>.Arn`.

Properties (all strings or lists of strings, as CloudFormation passes them):
  Name                          required; [a-zA-Z0-9](-*[a-zA-Z0-9])*, at most 247 characters
  ArtifactStoreUri              required; s3://bucket/prefix
  RoleArn                       required; the role SageMaker uses for the app (replaces the app)
  ModelRegistrationMode         AutoModelRegistrationEnabled (default) | AutoModelRegistrationDisabled
  WeeklyMaintenanceWindowStart  e.g. Tue:03:30 (UTC)
  KmsKeyId                      KMS key for the app's data (changing it replaces the app)
  AccountDefaultStatus          ENABLED | DISABLED
  DefaultDomainIdList           list, or comma-separated string, of domain ids: pass the stack's
                                domain so the app is that domain's default
  Tags                          [{Key, Value}], at most 48
A change to RoleArn or KmsKeyId creates a new app named `<Name>-<8 characters>` and CloudFormation
deletes the old one; every other change is made in place, sending UpdateMlflowApp the whole desired
configuration. Removing an optional scalar keeps the app's current value (the API cannot unset it).
A create SageMaker refuses because it cannot assume RoleArn yet (a role IAM has not propagated) is
tried again at each poll for mlflow_apps.ROLE_PROPAGATION_SECONDS, then fails saying so.

Physical id (Ref): the app ARN.
Attributes (Fn::GetAtt): Arn, Name (the app's actual name), MlflowVersion, EndpointUrl
(https://mlflow.sagemaker.<region>.app.aws, the REST endpoint for the proxy).

IAM (the function's role; replace <...>; crhelper names its rules <LogicalId of the resource> +
8 characters, and the function needs its own name, so give it a FunctionName):
  - Effect: Allow                      # create only apps tagged as this stack's
    Action: sagemaker:CreateMlflowApp
    Resource: !Sub arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:mlflow-app/*
    Condition: {StringEquals: {aws:RequestTag/mlflow-proxy:cloudformation-stack-id: !Ref AWS::StackId}}
  - Effect: Allow                      # tag-on-create needs AddTags, only within CreateMlflowApp
    Action: sagemaker:AddTags
    Resource: !Sub arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:mlflow-app/*
    Condition: {StringEquals: {sagemaker:TaggingAction: CreateMlflowApp,
                               aws:RequestTag/mlflow-proxy:cloudformation-stack-id: !Ref AWS::StackId}}
  - Effect: Allow                      # change only this stack's apps (mlflow_apps.Owner's tag)
    Action: [sagemaker:UpdateMlflowApp, sagemaker:DeleteMlflowApp, sagemaker:AddTags,
             sagemaker:DeleteTags]
    Resource: !Sub arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:mlflow-app/*
    Condition: {StringEquals: {aws:ResourceTag/mlflow-proxy:cloudformation-stack-id: !Ref AWS::StackId}}
  - Effect: Allow                      # read any app: a retried create finds the one it started
    Action: [sagemaker:DescribeMlflowApp, sagemaker:ListTags]
    Resource: !Sub arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:mlflow-app/*
  - Effect: Allow                      # finding the app a retried create started; List takes no ARN
    Action: sagemaker:ListMlflowApps
    Resource: '*'
  - Effect: Allow
    Action: iam:PassRole
    Resource: <the MLflow role's ARN>
    Condition: {StringEquals: {iam:PassedToService: sagemaker.amazonaws.com}}
  - Effect: Allow                      # crhelper's polling schedule
    Action: [events:PutRule, events:PutTargets, events:RemoveTargets, events:DeleteRule]
    Resource: !Sub arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/<LogicalId>*
  - Effect: Allow                      # ...which invokes this function
    Action: [lambda:AddPermission, lambda:RemovePermission]
    Resource: !Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:<FunctionName>
With KmsKeyId, SageMaker may also need kms:DescribeKey and kms:CreateGrant from the caller
(unconfirmed): add them on that key if creation fails with an access error.
"""

import logging
import time

import boto3
from crhelper import CfnResource

if __package__:  # imported as mlflow_app_resource.app (tests); Lambda loads app.py from the code root
    from . import mlflow_apps, properties
else:
    import mlflow_apps
    import properties

logger = logging.getLogger(__name__)
POLLING_MINUTES = 1
# helper.Data key, carried to every poll in crhelper's CrHelperData: until when a role SageMaker
# cannot assume yet is retried (mlflow_apps.ROLE_PROPAGATION_SECONDS). Never an attribute.
ROLE_RETRY_UNTIL = "RoleRetryUntil"


def build_helper(sagemaker=None, **crhelper_options) -> CfnResource:
    """The crhelper resource with its handlers; tests pass stubbed clients and crhelper options."""
    helper = CfnResource(log_level="INFO", polling_interval=POLLING_MINUTES, **crhelper_options)
    try:
        sagemaker = sagemaker or boto3.client("sagemaker", config=mlflow_apps.RETRIES)
    except Exception as error:  # reported to CloudFormation at once, not after an hour's wait
        helper.init_failure(error)

    def owner(event):
        return mlflow_apps.Owner(event["StackId"], event["LogicalResourceId"])

    def settings_of(event, properties_key="ResourceProperties"):
        return properties.parse(event[properties_key])

    def replacement_settings(event):
        new = settings_of(event)
        return {**new, "Name": mlflow_apps.replacement_name(new["Name"], event["RequestId"])}

    def start_create(event, settings):
        """The first call starts the role's retry window; a poll retries within it (see ROLE_RETRY_UNTIL)."""
        helper.Data.setdefault(ROLE_RETRY_UNTIL, time.time() + mlflow_apps.ROLE_PROPAGATION_SECONDS)
        return mlflow_apps.start_create(sagemaker, settings, owner(event), helper.Data[ROLE_RETRY_UNTIL])

    def started_app(event, settings):
        """The app the first call started, or, if SageMaker could not assume the role then, another try."""
        return helper.Data["PhysicalResourceId"] or start_create(event, settings)

    def finish(arn, attributes):
        if attributes is None:
            return None
        helper.Data.pop(ROLE_RETRY_UNTIL, None)
        helper.Data.update(attributes)
        return arn

    @helper.create
    def create(event, _context):
        return start_create(event, settings_of(event))

    @helper.poll_create
    def poll_create(event, _context):
        arn = started_app(event, settings_of(event))
        if arn is None:
            return None
        # Reported even if creation failed, so that the rollback's Delete removes the app.
        helper.PhysicalResourceId = arn
        return finish(arn, mlflow_apps.create_finished(sagemaker, arn))

    @helper.update
    def update(event, _context):
        old, new = settings_of(event, "OldResourceProperties"), settings_of(event)
        if properties.needs_replacement(old, new):
            settings = replacement_settings(event)
            logger.info("RoleArn or KmsKeyId changed: replacing the app with %s", settings["Name"])
            return start_create(event, settings)
        mlflow_apps.start_update(sagemaker, event["PhysicalResourceId"], old, new)
        return event["PhysicalResourceId"]

    @helper.poll_update
    def poll_update(event, _context):
        helper.PhysicalResourceId = event["PhysicalResourceId"]  # what a failed update leaves
        old, new = settings_of(event, "OldResourceProperties"), settings_of(event)
        if properties.needs_replacement(old, new):
            arn = started_app(event, replacement_settings(event))
            if arn is None:
                return None
            try:
                return finish(arn, mlflow_apps.create_finished(sagemaker, arn))
            except mlflow_apps.AppFailed:
                # CloudFormation keeps the old app when an update fails and never learns this one.
                mlflow_apps.discard(sagemaker, arn)
                raise
        arn = event["PhysicalResourceId"]
        return finish(arn, mlflow_apps.update_finished(sagemaker, arn, old, new))

    @helper.delete
    def delete(event, _context):
        mlflow_apps.start_delete(sagemaker, event["PhysicalResourceId"])
        return event["PhysicalResourceId"]

    @helper.poll_delete
    def poll_delete(event, _context):
        physical_id = event["PhysicalResourceId"]
        return physical_id if mlflow_apps.delete_finished(sagemaker, physical_id) else None

    return helper


helper = build_helper()


def handler(event, context):
    helper(event, context)
