"""Which IAM action SageMaker checks for each MLflow REST call: one table for the proxy (which
signs a read-only caller's call with the read-only role only where IAM names an action for it),
the stand-in's emulator and the template tests (tests/templates/test_read_only_role_policy.py).

Tracking servers have one `sagemaker-mlflow:` action per MLflow API (docs/aws-facts.md, "IAM
actions for the MLflow REST API", from AWS's Service Authorization Reference). The action is
the MLflow RPC's name capitalised (`searchRuns` -> `SearchRuns`), except `getLatestVersions` ->
`GetLatestModelVersions` and `getModelVersionDownloadUri` ->
`GetDownloadURIForModelVersionArtifacts`. The reference names 61 actions: the 60 below and
`AccessUI`, which the MLflow UI needs and no REST call does. MLflow 3.17 has about 150 more
endpoints (datasets, logged-model creation, v3 traces, webhooks, ...) that the reference names
no action for; ENDPOINT_ACTIONS leaves them out (action_for() returns None). The v3 trace calls
that repeat a v2 one are an exception: they are listed with the v2 call's action, which is an
assumption, not a documented fact.

An MLflow App (serverless) is reached with one action, `sagemaker:CallMlflowAppApi`, whatever
the call: IAM cannot tell a read from a write there.
"""

import re
from typing import Optional

SERVICE_PREFIX = "sagemaker-mlflow"
MLFLOW_APP_ACTION = "sagemaker:CallMlflowAppApi"

# Access level "Read" or "List" in the Service Authorization Reference, less AccessUI.
READ_ACTIONS = frozenset(
    {
        "GetDownloadURIForModelVersionArtifacts",
        "GetExperiment",
        "GetExperimentByName",
        "GetLatestModelVersions",
        "GetLoggedModel",
        "GetMetricHistory",
        "GetModelVersion",
        "GetModelVersionByAlias",
        "GetRegisteredModel",
        "GetRun",
        "GetTraceInfo",
        "ListArtifacts",
        "ListLoggedModelArtifacts",
        "SearchExperiments",
        "SearchLoggedModels",
        "SearchModelVersions",
        "SearchRegisteredModels",
        "SearchRuns",
        "SearchTraces",
    }
)
# Access level "Write".
WRITE_ACTIONS = frozenset(
    {
        "CreateExperiment",
        "CreateModelVersion",
        "CreateRegisteredModel",
        "CreateRun",
        "DeleteExperiment",
        "DeleteLoggedModel",
        "DeleteLoggedModelTag",
        "DeleteModelVersion",
        "DeleteModelVersionTag",
        "DeleteRegisteredModel",
        "DeleteRegisteredModelAlias",
        "DeleteRegisteredModelTag",
        "DeleteRun",
        "DeleteTag",
        "DeleteTraceTag",
        "DeleteTraces",
        "EndTrace",
        "FinalizeLoggedModel",
        "LogBatch",
        "LogInputs",
        "LogLoggedModelParams",
        "LogMetric",
        "LogModel",
        "LogOutputs",
        "LogParam",
        "RenameRegisteredModel",
        "RestoreExperiment",
        "RestoreRun",
        "SetExperimentTag",
        "SetLoggedModelTags",
        "SetModelVersionTag",
        "SetRegisteredModelAlias",
        "SetRegisteredModelTag",
        "SetTag",
        "SetTraceTag",
        "StartTrace",
        "TransitionModelVersionStage",
        "UpdateExperiment",
        "UpdateModelVersion",
        "UpdateRegisteredModel",
        "UpdateRun",
    }
)

# Method, path under /api/ (`{x}` is one path segment), action. From MLflow 3.17's endpoint list
# (tests/unit/proxy/data/mlflow-rest-endpoints-3.17.txt); tests/unit/local/
# test_mlflow_iam_actions.py checks every row against it and the naming rule.
_ENDPOINT_TABLE = """
POST   2.0/mlflow/experiments/create                               CreateExperiment
GET    2.0/mlflow/experiments/search                               SearchExperiments
POST   2.0/mlflow/experiments/search                               SearchExperiments
GET    2.0/mlflow/experiments/get                                  GetExperiment
GET    2.0/mlflow/experiments/get-by-name                          GetExperimentByName
POST   2.0/mlflow/experiments/delete                               DeleteExperiment
POST   2.0/mlflow/experiments/restore                              RestoreExperiment
POST   2.0/mlflow/experiments/update                               UpdateExperiment
POST   2.0/mlflow/experiments/set-experiment-tag                   SetExperimentTag
POST   2.0/mlflow/runs/create                                      CreateRun
POST   2.0/mlflow/runs/update                                      UpdateRun
POST   2.0/mlflow/runs/delete                                      DeleteRun
POST   2.0/mlflow/runs/restore                                     RestoreRun
POST   2.0/mlflow/runs/log-metric                                  LogMetric
POST   2.0/mlflow/runs/log-parameter                               LogParam
POST   2.0/mlflow/runs/set-tag                                     SetTag
POST   2.0/mlflow/runs/delete-tag                                  DeleteTag
GET    2.0/mlflow/runs/get                                         GetRun
POST   2.0/mlflow/runs/search                                      SearchRuns
POST   2.0/mlflow/runs/log-batch                                   LogBatch
POST   2.0/mlflow/runs/log-model                                   LogModel
POST   2.0/mlflow/runs/log-inputs                                  LogInputs
POST   2.0/mlflow/runs/outputs                                     LogOutputs
GET    2.0/mlflow/artifacts/list                                   ListArtifacts
GET    2.0/mlflow/metrics/get-history                              GetMetricHistory
POST   2.0/mlflow/traces                                           StartTrace
GET    2.0/mlflow/traces                                           SearchTraces
PATCH  2.0/mlflow/traces/{request_id}                              EndTrace
GET    2.0/mlflow/traces/{request_id}/info                         GetTraceInfo
PATCH  2.0/mlflow/traces/{request_id}/tags                         SetTraceTag
DELETE 2.0/mlflow/traces/{request_id}/tags                         DeleteTraceTag
POST   2.0/mlflow/traces/delete-traces                             DeleteTraces
PATCH  2.0/mlflow/logged-models/{model_id}                         FinalizeLoggedModel
GET    2.0/mlflow/logged-models/{model_id}                         GetLoggedModel
DELETE 2.0/mlflow/logged-models/{model_id}                         DeleteLoggedModel
POST   2.0/mlflow/logged-models/search                             SearchLoggedModels
PATCH  2.0/mlflow/logged-models/{model_id}/tags                    SetLoggedModelTags
DELETE 2.0/mlflow/logged-models/{model_id}/tags/{tag_key}          DeleteLoggedModelTag
GET    2.0/mlflow/logged-models/{model_id}/artifacts/directories   ListLoggedModelArtifacts
POST   2.0/mlflow/logged-models/{model_id}/params                  LogLoggedModelParams
POST   2.0/mlflow/registered-models/create                         CreateRegisteredModel
POST   2.0/mlflow/registered-models/rename                         RenameRegisteredModel
PATCH  2.0/mlflow/registered-models/update                         UpdateRegisteredModel
DELETE 2.0/mlflow/registered-models/delete                         DeleteRegisteredModel
GET    2.0/mlflow/registered-models/get                            GetRegisteredModel
GET    2.0/mlflow/registered-models/search                         SearchRegisteredModels
GET    2.0/mlflow/registered-models/get-latest-versions            GetLatestModelVersions
POST   2.0/mlflow/registered-models/get-latest-versions            GetLatestModelVersions
POST   2.0/mlflow/registered-models/set-tag                        SetRegisteredModelTag
DELETE 2.0/mlflow/registered-models/delete-tag                     DeleteRegisteredModelTag
POST   2.0/mlflow/registered-models/alias                          SetRegisteredModelAlias
DELETE 2.0/mlflow/registered-models/alias                          DeleteRegisteredModelAlias
GET    2.0/mlflow/registered-models/alias                          GetModelVersionByAlias
POST   2.0/mlflow/model-versions/create                            CreateModelVersion
PATCH  2.0/mlflow/model-versions/update                            UpdateModelVersion
POST   2.0/mlflow/model-versions/transition-stage                  TransitionModelVersionStage
DELETE 2.0/mlflow/model-versions/delete                            DeleteModelVersion
GET    2.0/mlflow/model-versions/get                               GetModelVersion
GET    2.0/mlflow/model-versions/search                            SearchModelVersions
GET    2.0/mlflow/model-versions/get-download-uri                  GetDownloadURIForModelVersionArtifacts
POST   2.0/mlflow/model-versions/set-tag                           SetModelVersionTag
DELETE 2.0/mlflow/model-versions/delete-tag                        DeleteModelVersionTag
# Assumed, not documented: the v3 trace calls checked as the v2 call they repeat.
POST   3.0/mlflow/traces                                           StartTrace
POST   3.0/mlflow/traces/search                                    SearchTraces
PATCH  3.0/mlflow/traces/{trace_id}/tags                           SetTraceTag
DELETE 3.0/mlflow/traces/{trace_id}/tags                           DeleteTraceTag
POST   3.0/mlflow/traces/delete-traces                             DeleteTraces
"""
ENDPOINT_ACTIONS = tuple(
    tuple(line.split())
    for line in _ENDPOINT_TABLE.splitlines()
    if line.strip() and not line.startswith("#")
)

_PREFIX = re.compile(r"^/(?:ajax-)?api/")


def _pattern(path: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")


# No two rows of one method match one path (the test checks it), so their order is free.
_TABLE = tuple((method, _pattern(path), action) for method, path, action in ENDPOINT_ACTIONS)


def action_for(method: str, path: str) -> Optional[str]:
    """The `sagemaker-mlflow:` action (without the prefix) a tracking server checks for this
    call, or None when the reference documents none."""
    match = _PREFIX.match(path)
    if match is None:
        return None
    rest = path[match.end() :]
    for row_method, pattern, action in _TABLE:
        if row_method == method and pattern.match(rest):
            return action
    return None
