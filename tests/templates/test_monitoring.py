"""nested/monitoring.yaml and its wiring: the dashboard renders to JSON naming every metric the
operations page describes, the metric filters and saved queries read the JSON access log's keys,
the alarms notify only when a topic is given, and the root turns it all on by default."""

import json
import re

import pytest

from template_support import resources_of_type

# The access log's keys (one JSON object per line), which stay as keys are added.
ACCESS_LOG_KEYS = {"client", "caller", "method", "path", "status", "upstream_ms", "total_ms",
                   "bytes_in", "bytes_out"}
ALARMS = {"UnhealthyHostsAlarm", "Target5xxRateAlarm", "P99LatencyAlarm", "Repeated401sAlarm"}


@pytest.fixture(scope="module")
def monitoring(templates):
    return templates["nested/monitoring.yaml"]


def render(node, template, conditions):
    """Resolve Fn::Sub, Fn::If, Ref and Fn::GetAtt the way CloudFormation would, with
    recognisable stand-ins for parameters and attributes."""
    if isinstance(node, list):
        return [render(n, template, conditions) for n in node]
    if not isinstance(node, dict):
        return node
    if "Fn::If" in node:
        condition, if_true, if_false = node["Fn::If"]
        return render(if_true if conditions[condition] else if_false, template, conditions)
    if "Ref" in node:
        return stand_in_value(node["Ref"], template)
    if "Fn::GetAtt" in node:
        return stand_in_value(".".join(node["Fn::GetAtt"]), template)
    if "Fn::Sub" in node:
        text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
        values = {name: render(value, template, conditions) for name, value in variables.items()}
        return re.sub(
            r"\$\{([^}!]+)\}",
            lambda m: str(values[m.group(1)] if m.group(1) in values else stand_in_value(m.group(1), template)),
            text,
        )
    return {key: render(value, template, conditions) for key, value in node.items()}


def stand_in_value(name, template):
    if name in template["Parameters"]:
        return template["Parameters"][name].get("Default", f"<{name}>")
    if name.endswith(".Arn"):
        return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name[:-4]}"
    return {"AWS::Region": "us-east-1", "AWS::NoValue": None}.get(name, f"<{name}>")


@pytest.mark.parametrize("with_function", [False, True])
def test_the_dashboard_is_json_with_every_widget(monitoring, with_function):
    dashboard = monitoring["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    body = json.loads(render(dashboard, monitoring, {"HasMlflowAppFunction": with_function}))
    metrics = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    names = {(m[0], m[1]) for m in metrics}
    assert {
        ("AWS/ApplicationELB", name)
        for name in ("RequestCount", "HTTPCode_ELB_4XX_Count", "HTTPCode_ELB_5XX_Count",
                     "HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count", "TargetResponseTime",
                     "HealthyHostCount", "UnHealthyHostCount")
    } | {("AWS/EC2", "CPUUtilization")} | {
        ("MLflowProxy/<Name>", f"Status{status}") for status in (401, 403, 502, 504)
    } <= names
    assert (("AWS/Lambda", "Errors") in names) == with_function
    latency_stats = {m[-1]["stat"] for m in metrics if m[1] == "TargetResponseTime"}
    assert latency_stats == {"p50", "p99"}
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert {arn.rsplit(":", 1)[1] for arn in alarm_widget["properties"]["alarms"]} == ALARMS
    # Widgets do not overlap on the dashboard's 24-column grid.
    cells = [(w["x"] + dx, w["y"] + dy) for w in body["widgets"]
             for dx in range(w["width"]) for dy in range(w["height"])]
    assert len(cells) == len(set(cells)) and max(x for x, _ in cells) < 24


def test_metric_filters_are_json_patterns_on_the_access_log_status(monitoring):
    filters = resources_of_type(monitoring, "AWS::Logs::MetricFilter").values()
    statuses = {}
    for metric_filter in filters:
        properties = metric_filter["Properties"]
        assert properties["LogGroupName"] == {"Ref": "ProxyLogGroupName"}
        match = re.fullmatch(r"\{ \$\.(\w+) = (\d{3}) \}", properties["FilterPattern"])
        assert match and match.group(1) in ACCESS_LOG_KEYS, properties["FilterPattern"]
        (transformation,) = properties["MetricTransformations"]
        assert transformation["MetricName"] == f"Status{match.group(2)}"
        assert transformation["MetricNamespace"] == {"Fn::Sub": "MLflowProxy/${Name}"}
        statuses[int(match.group(2))] = transformation
    assert set(statuses) == {401, 403, 502, 504}


def test_alarms_notify_only_when_a_topic_is_given(monitoring):
    alarms = resources_of_type(monitoring, "AWS::CloudWatch::Alarm")
    assert set(alarms) == ALARMS
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        for actions in ("AlarmActions", "OKActions"):
            assert properties[actions] == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }, name
        # No traffic is not an outage: an idle proxy stays OK.
        assert properties["TreatMissingData"] == "notBreaching", name
        assert "docs/operations.md" in render(properties["AlarmDescription"], monitoring, {}), name


def test_the_401_alarm_counts_what_the_401_filter_emits(monitoring):
    alarm = monitoring["Resources"]["Repeated401sAlarm"]["Properties"]
    emitted = monitoring["Resources"]["Unauthenticated401Filter"]["Properties"]["MetricTransformations"][0]
    assert (alarm["Namespace"], alarm["MetricName"]) == (emitted["MetricNamespace"], emitted["MetricName"])


def test_saved_queries_read_the_access_log_keys(monitoring):
    queries = resources_of_type(monitoring, "AWS::Logs::QueryDefinition").values()
    names = {q["Properties"]["Name"]["Fn::Sub"] for q in queries}
    assert names == {"${Name}/calls per caller", "${Name}/slowest calls", "${Name}/errors by status"}
    insights_words = {"filter", "ispresent", "and", "stats", "count", "as", "calls", "sum", "errors",
                      "avg", "avg_ms", "pct", "p99_ms", "by", "sort", "desc", "fields", "limit"}
    for query in queries:
        properties = query["Properties"]
        assert properties["LogGroupNames"] == [{"Ref": "ProxyLogGroupName"}]
        words = set(re.findall(r"(?<![@\w])[a-z_]+\b", properties["QueryString"]))
        assert words - insights_words <= ACCESS_LOG_KEYS, properties["QueryString"]
        assert words & ACCESS_LOG_KEYS


def test_the_root_turns_monitoring_on_by_default_and_wires_it(root, proxy, mlflow, monitoring):
    assert root["Parameters"]["Monitoring"]["Default"] == "true"
    assert root["Parameters"]["AlarmTopicArn"]["Default"] == ""
    stack = root["Resources"]["Monitor"]
    assert stack["Condition"] == "HasMonitoring"
    assert root["Conditions"]["HasMonitoring"] == {"Fn::Equals": [{"Ref": "Monitoring"}, "true"]}
    passed = stack["Properties"]["Parameters"]
    required = {n for n, p in monitoring["Parameters"].items() if "Default" not in p}
    assert required <= set(passed)
    for value in passed.values():
        for nested, output in re.findall(r"'(Proxy|Mlflow)', 'Outputs\.(\w+)'", str(value)):
            assert output in {"Proxy": proxy, "Mlflow": mlflow}[nested]["Outputs"]
    assert root["Outputs"]["DashboardUrl"]["Condition"] == "HasMonitoring"


@pytest.mark.parametrize("topic, accepted", [
    ("", True),
    ("arn:aws:sns:us-east-1:123456789012:ops-alerts", True),
    ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:ops.fifo", True),
    ("arn:aws:sqs:us-east-1:123456789012:ops", False),
    ("ops-alerts", False),
])
def test_the_alarm_topic_must_be_an_sns_topic_arn(root, topic, accepted):
    assert bool(re.fullmatch(root["Parameters"]["AlarmTopicArn"]["AllowedPattern"], topic)) == accepted
