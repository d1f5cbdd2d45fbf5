"""The proxy with its read-only allow-list broken on purpose: a read-only caller may call
anything. Served by gunicorn in a stand-in (StandIn(proxy_app=...)) to show that IAM, through the
read-only role, still refuses the writes that get past it."""

import mlflow_proxy
from mlflow_proxy import callers


def create_app():
    callers.Caller.may_call = lambda caller, method, path: True
    return mlflow_proxy.create_app()
