"""Recorded CloudFormation events through the real cleanup handler, answered over TLS to a loopback
server (see cloudformation_fakes); EC2, EFS, SageMaker and crhelper's polling calls are stubbed."""

import json
from pathlib import Path

from tests.unit.domain_cleanup.leftover_stubs import (
    DOMAIN, FS_ID, expect_discovery, expect_domain, expect_security_group_removal, file_system, mount_target, nfs_groups)
from tests.unit.mlflow_app_resource.cloudformation_fakes import LambdaContext, PollingStubs, load_event

HERE = Path(__file__).parent
PHYSICAL_ID = "sagemaker-leftovers-vpc-0a1b2c3d4e5f67890"


def only_response(server, event):
    [response] = server.responses
    body = response["body"]
    assert (body["StackId"], body["RequestId"], body["LogicalResourceId"]) == (
        event["StackId"], event["RequestId"], event["LogicalResourceId"])
    return body


def test_create_does_nothing_and_succeeds_at_once(cleanup_handler, response_server):
    event = load_event(HERE, "create", response_server.url)

    cleanup_handler.handler(event, LambdaContext())  # Stubber fails any AWS call: none is queued

    body = only_response(response_server, event)
    assert (body["Status"], body["PhysicalResourceId"], body["Data"]) == ("SUCCESS", PHYSICAL_ID, {})


def test_update_does_nothing_and_keeps_the_physical_id(cleanup_handler, response_server):
    event = load_event(HERE, "update", response_server.url)

    cleanup_handler.handler(event, LambdaContext())

    body = only_response(response_server, event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", PHYSICAL_ID)


def test_create_without_a_vpc_fails_with_a_clear_reason(cleanup_handler, response_server):
    event = load_event(HERE, "create-without-vpc", response_server.url)

    cleanup_handler.handler(event, LambdaContext())

    body = only_response(response_server, event)
    assert body["Status"] == "FAILED"
    assert "Missing required property VpcId" in body["Reason"]


def test_delete_removes_the_leftovers_over_polls_then_succeeds(cleanup_handler, clients, response_server):
    event = load_event(HERE, "delete", response_server.url)
    with PollingStubs(cleanup_handler.helper, "DomainCleanup") as polling:
        poll_input = polling.expect_setup()
        expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: [mount_target(1)]})
        expect_domain(clients, DOMAIN)
        clients.efs_stub.add_response("delete_mount_target", {}, {"MountTargetId": mount_target(1)["MountTargetId"]})
        cleanup_handler.handler(event, LambdaContext())
        assert response_server.responses == []

        expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: [mount_target(1, "deleting")]})
        expect_domain(clients, DOMAIN)
        cleanup_handler.handler(json.loads(poll_input.value), LambdaContext())
        assert response_server.responses == []

        poll_event = json.loads(poll_input.value)
        expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: []})
        expect_domain(clients, DOMAIN)
        clients.efs_stub.add_response("delete_file_system", {}, {"FileSystemId": FS_ID})
        expect_security_group_removal(clients, nfs_groups())
        polling.expect_teardown(poll_event["CrHelperPermission"])
        cleanup_handler.handler(poll_event, LambdaContext())
        polling.assert_done()

    body = only_response(response_server, event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", PHYSICAL_ID)


def test_deleting_after_a_failed_create_succeeds_without_a_call(cleanup_handler, response_server):
    event = load_event(HERE, "delete-after-failed-create", response_server.url)
    with PollingStubs(cleanup_handler.helper, "DomainCleanup") as polling:
        poll_input = polling.expect_setup()
        cleanup_handler.handler(event, LambdaContext())
        poll_event = json.loads(poll_input.value)
        polling.expect_teardown(poll_event["CrHelperPermission"])
        cleanup_handler.handler(poll_event, LambdaContext())
        polling.assert_done()

    body = only_response(response_server, event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", event["PhysicalResourceId"])
