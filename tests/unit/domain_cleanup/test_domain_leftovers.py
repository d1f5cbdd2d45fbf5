"""The cleanup of a deleted domain's EFS and NFS security groups, against Stubber."""

import pytest

from domain_cleanup import leftovers
from tests.unit.domain_cleanup.leftover_stubs import (
    DOMAIN, FS_ID, OTHER_DOMAIN, OTHER_VPC, VPC, expect_discovery, expect_domain, expect_security_group_removal,
    file_system, mount_target, nfs_groups)


def remove(clients, domain_id=None):
    return leftovers.remove_leftovers(clients.ec2, clients.efs, clients.sagemaker, VPC, domain_id)


def test_nothing_left_is_finished_without_deleting_anything(clients):
    expect_discovery(clients, [], [], {})

    assert remove(clients) is True


def test_everything_left_goes_mount_targets_first_then_the_file_system_and_groups(clients):
    targets = {FS_ID: [mount_target(1), mount_target(2)]}
    expect_discovery(clients, nfs_groups(), [file_system()], targets)
    expect_domain(clients, DOMAIN)
    for target in targets[FS_ID]:
        clients.efs_stub.add_response("delete_mount_target", {}, {"MountTargetId": target["MountTargetId"]})
    assert remove(clients) is False  # the groups are attached to the mount targets until they go

    expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: []})
    expect_domain(clients, DOMAIN)
    clients.efs_stub.add_response("delete_file_system", {}, {"FileSystemId": FS_ID})
    expect_security_group_removal(clients, nfs_groups())
    assert remove(clients) is True


def test_mount_targets_still_deleting_are_waited_for(clients):
    expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: [mount_target(1, "deleting")]})
    expect_domain(clients, DOMAIN)

    assert remove(clients) is False  # and nothing is deleted twice


def test_a_partial_earlier_cleanup_is_finished(clients):
    # The file system is deleting, one group is gone and the other has lost its rules already.
    remaining = nfs_groups(with_rules=False, which=("outbound",))
    expect_discovery(clients, remaining, [file_system(state="deleting")], {})
    expect_domain(clients, DOMAIN)
    expect_security_group_removal(clients, remaining)

    assert remove(clients) is True


def test_a_group_deleted_meanwhile_is_not_an_error(clients):
    groups = nfs_groups()
    expect_discovery(clients, groups, [], {})
    expect_domain(clients, DOMAIN)
    clients.ec2_stub.add_client_error("revoke_security_group_ingress", "InvalidGroup.NotFound", "gone", 400)
    clients.ec2_stub.add_response("revoke_security_group_egress", {"Return": True})
    clients.ec2_stub.add_client_error("delete_security_group", "InvalidGroup.NotFound", "gone", 400)
    clients.ec2_stub.add_response("delete_security_group", {"Return": True})

    assert remove(clients) is True


def test_a_group_still_in_use_is_tried_again_later(clients):
    groups = nfs_groups(with_rules=False)
    expect_discovery(clients, groups, [], {})
    expect_domain(clients, DOMAIN)
    clients.ec2_stub.add_client_error("delete_security_group", "DependencyViolation", "in use", 400)
    clients.ec2_stub.add_response("delete_security_group", {"Return": True})

    assert remove(clients) is False


def test_a_file_system_that_has_not_noticed_its_mount_targets_went_is_tried_again(clients):
    expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: []})
    expect_domain(clients, DOMAIN)
    clients.efs_stub.add_client_error("delete_file_system", "FileSystemInUse", "in use", 409)

    assert remove(clients) is False


def test_a_domain_that_still_exists_is_left_alone(clients):
    expect_discovery(clients, nfs_groups(OTHER_DOMAIN), [file_system(OTHER_DOMAIN)],
                     {FS_ID: [mount_target(1)]})
    expect_domain(clients, OTHER_DOMAIN, "InService")

    assert remove(clients) is True  # nothing of a deleted domain is left; no delete call was made


def test_a_domain_still_deleting_is_waited_for(clients):
    expect_discovery(clients, nfs_groups(), [file_system()], {FS_ID: [mount_target(1)]})
    expect_domain(clients, DOMAIN, "Deleting")

    assert remove(clients) is False


def test_a_file_system_mounted_in_another_vpc_is_left_alone(clients):
    expect_discovery(clients, nfs_groups(), [file_system()],
                     {FS_ID: [mount_target(1), mount_target(2, vpc=OTHER_VPC)]})
    expect_domain(clients, DOMAIN)
    expect_security_group_removal(clients, nfs_groups())  # the groups are in our VPC

    assert remove(clients) is True


def test_a_file_system_of_a_domain_elsewhere_is_not_a_candidate(clients):
    expect_discovery(clients, [], [file_system("d-elsewhere0000")], {FS_ID: [mount_target(1, vpc=OTHER_VPC)]})

    assert remove(clients) is True  # no DescribeDomain, no delete


def test_a_given_domain_id_limits_the_cleanup_to_that_domain(clients):
    expect_discovery(clients, nfs_groups("d-deletedother"), [], {})
    expect_domain(clients, DOMAIN)

    assert remove(clients, DOMAIN) is True  # d-deletedother's groups are not touched


@pytest.mark.parametrize("name", ["security-group-for-inbound-nfs-d-abc", "security-group-for-outbound-nfs-d-abc"])
def test_nfs_group_names_give_the_domain(name):
    assert leftovers.NFS_GROUP_PATTERN.fullmatch(name).group(1) == "d-abc"
