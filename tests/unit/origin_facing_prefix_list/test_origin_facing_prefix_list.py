"""Recorded CloudFormation events through the real handler, answered over TLS to a loopback server
(see cloudformation_fakes); EC2 is stubbed and checked against botocore's model."""

from pathlib import Path

from tests.unit.mlflow_app_resource.cloudformation_fakes import LambdaContext, load_event

HERE = Path(__file__).parent
NAME = "com.amazonaws.global.cloudfront.origin-facing"
QUERY = {"Filters": [{"Name": "prefix-list-name", "Values": [NAME]}]}


def managed_list(prefix_list_id):
    return {"PrefixListId": prefix_list_id, "PrefixListName": NAME, "OwnerId": "AWS",
            "AddressFamily": "IPv4", "State": "create-complete", "MaxEntries": 55}


def only_response(server):
    [response] = server.responses
    return response["body"]


def test_create_answers_with_the_regions_prefix_list_id(prefix_list_handler, ec2_stub, response_server):
    _, stub = ec2_stub
    stub.add_response("describe_managed_prefix_lists", {"PrefixLists": [managed_list("pl-3b927c52")]}, QUERY)

    prefix_list_handler.handler(load_event(HERE, "create", response_server.url), LambdaContext())

    body = only_response(response_server)
    assert (body["Status"], body["PhysicalResourceId"], body["Data"]) == (
        "SUCCESS", "pl-3b927c52", {"PrefixListId": "pl-3b927c52"})


def test_update_looks_the_id_up_again(prefix_list_handler, ec2_stub, response_server):
    _, stub = ec2_stub
    stub.add_response("describe_managed_prefix_lists", {"PrefixLists": [managed_list("pl-3b927c52")]}, QUERY)

    prefix_list_handler.handler(load_event(HERE, "update", response_server.url), LambdaContext())

    body = only_response(response_server)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", "pl-3b927c52")


def test_a_region_without_the_list_fails_the_stack_with_its_name(prefix_list_handler, ec2_stub, response_server):
    _, stub = ec2_stub
    stub.add_response("describe_managed_prefix_lists", {"PrefixLists": []}, QUERY)

    prefix_list_handler.handler(load_event(HERE, "create", response_server.url), LambdaContext())

    body = only_response(response_server)
    assert body["Status"] == "FAILED"
    assert NAME in body["Reason"] and "0 managed prefix lists" in body["Reason"]


def test_create_without_a_name_fails_with_a_clear_reason(prefix_list_handler, response_server):
    prefix_list_handler.handler(load_event(HERE, "create-without-name", response_server.url), LambdaContext())

    body = only_response(response_server)
    assert body["Status"] == "FAILED"
    assert "Missing required property PrefixListName" in body["Reason"]


def test_delete_calls_nothing_and_keeps_the_physical_id(prefix_list_handler, response_server):
    # Stubber fails any call, and none is queued: the list is AWS's, nothing is deleted.
    prefix_list_handler.handler(load_event(HERE, "delete", response_server.url), LambdaContext())

    body = only_response(response_server)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", "pl-3b927c52")
