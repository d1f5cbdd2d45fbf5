"""What SageMaker leaves behind, as EC2 and EFS describe it, and the calls that remove it, queued on
Stubber-checked clients (conftest.Clients). Shared by the logic and handler tests."""

from domain_cleanup import leftovers

VPC = "vpc-0a1b2c3d4e5f67890"
OTHER_VPC = "vpc-0fedcba9876543210"
DOMAIN = "d-abcdef123456"
OTHER_DOMAIN = "d-live00000000"
ACCOUNT = "123456789012"
FS_ID = "fs-0123456789abcdef0"
INBOUND, OUTBOUND = "sg-0inbound000000001", "sg-0outbound00000001"


def nfs_groups(domain=DOMAIN, with_rules=True, vpc=VPC, which=("inbound", "outbound")):
    ids = {"inbound": INBOUND, "outbound": OUTBOUND}
    peer = {"inbound": OUTBOUND, "outbound": INBOUND}
    nfs = lambda group_id: [{"IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,  # noqa: E731
                             "UserIdGroupPairs": [{"GroupId": group_id, "UserId": ACCOUNT}]}]
    return [{
        "GroupId": ids[kind], "GroupName": f"security-group-for-{kind}-nfs-{domain}", "VpcId": vpc,
        "OwnerId": ACCOUNT, "Description": f"[DO NOT DELETE] Security Group that allows {kind} NFS traffic",
        "IpPermissions": nfs(peer[kind]) if with_rules and kind == "inbound" else [],
        "IpPermissionsEgress": nfs(peer[kind]) if with_rules and kind == "outbound" else [],
    } for kind in which]


def file_system(domain=DOMAIN, fs_id=FS_ID, state="available"):
    return {
        "OwnerId": ACCOUNT, "CreationToken": f"token-{fs_id}", "FileSystemId": fs_id,
        "CreationTime": "2026-11-01T00:00:00Z", "LifeCycleState": state, "NumberOfMountTargets": 2,
        "SizeInBytes": {"Value": 6144}, "PerformanceMode": "generalPurpose",
        "Tags": [{"Key": "ManagedByAmazonSageMakerResource",
                  "Value": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:domain/{domain}"}],
    }


def mount_target(number, state="available", vpc=VPC, fs_id=FS_ID):
    return {"MountTargetId": f"fsmt-000000000000000{number}", "FileSystemId": fs_id,
            "SubnetId": f"subnet-000000000000000{number}", "LifeCycleState": state, "VpcId": vpc}


def expect_discovery(clients, groups, file_systems, mount_targets):
    clients.ec2_stub.add_response("describe_security_groups", {"SecurityGroups": groups}, {"Filters": [
        {"Name": "vpc-id", "Values": [VPC]}, {"Name": "group-name", "Values": leftovers.NFS_GROUP_NAMES}]})
    clients.efs_stub.add_response("describe_file_systems", {"FileSystems": file_systems}, {})
    for fs in file_systems:
        if fs["LifeCycleState"] == "available":
            clients.efs_stub.add_response("describe_mount_targets",
                                          {"MountTargets": mount_targets.get(fs["FileSystemId"], [])},
                                          {"FileSystemId": fs["FileSystemId"]})


def expect_domain(clients, domain, status=None):
    if status is None:
        clients.sagemaker_stub.add_client_error("describe_domain", "ResourceNotFound", "not found", 400,
                                                expected_params={"DomainId": domain})
    else:
        clients.sagemaker_stub.add_response("describe_domain", {"DomainId": domain, "Status": status},
                                            {"DomainId": domain})


def expect_security_group_removal(clients, groups):
    for group in groups:
        if group["IpPermissions"]:
            clients.ec2_stub.add_response("revoke_security_group_ingress", {"Return": True},
                                          {"GroupId": group["GroupId"], "IpPermissions": group["IpPermissions"]})
        if group["IpPermissionsEgress"]:
            clients.ec2_stub.add_response("revoke_security_group_egress", {"Return": True},
                                          {"GroupId": group["GroupId"], "IpPermissions": group["IpPermissionsEgress"]})
    for group in groups:
        clients.ec2_stub.add_response("delete_security_group", {"Return": True, "GroupId": group["GroupId"]},
                                      {"GroupId": group["GroupId"]})
