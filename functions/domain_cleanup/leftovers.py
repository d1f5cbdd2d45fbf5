"""Remove what a deleted SageMaker AI domain leaves in a VPC, so the VPC and its subnets can go.

SageMaker creates, outside the stack, an EFS file system for the domain's home directories (tagged
ManagedByAmazonSageMakerResource = the domain's ARN) with a mount target in each subnet, and two
security groups for its NFS traffic, `security-group-for-inbound-nfs-<domain id>` and
`security-group-for-outbound-nfs-<domain id>`, whose rules reference each other.

`remove_leftovers` is one step of a convergent cleanup: it deletes what can be deleted now and says
whether anything is left, and is called again (crhelper polls each minute) until nothing is. It only
touches leftovers of domains that no longer exist, found by their tag or name, in the given VPC.
"""

import logging
import re

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

DOMAIN_TAG = "ManagedByAmazonSageMakerResource"
DOMAIN_ARN_PATTERN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:\d{12}:domain/(d-[a-z0-9]+)")
NFS_GROUP_PATTERN = re.compile(r"security-group-for-(?:inbound|outbound)-nfs-(d-[a-z0-9]+)")
NFS_GROUP_NAMES = ["security-group-for-inbound-nfs-*", "security-group-for-outbound-nfs-*"]


def remove_leftovers(ec2, efs, sagemaker, vpc_id: str, domain_id: str | None = None) -> bool:
    """Delete the leftovers of deleted domains in `vpc_id` (only `domain_id`'s, if given).

    Returns True when none are left, False when some are still going (call again later).
    """
    groups = _nfs_security_groups(ec2, vpc_id)
    file_systems = _domain_file_systems(efs)
    domains = set(groups) | {domain for domain, fs in file_systems.items() if _mount_targets_in(fs, vpc_id)}
    if domain_id:
        domains = {domain_id}
    finished = True
    for domain in sorted(domains):
        state = _domain_state(sagemaker, domain)
        if state == "live":
            logger.info("Domain %s still exists: its EFS and security groups are in use, left alone", domain)
            continue
        if state == "deleting":
            finished = False
            continue
        finished &= _remove_domain_leftovers(ec2, efs, vpc_id, domain, file_systems.get(domain, []),
                                             groups.get(domain, []))
    return finished


def _remove_domain_leftovers(ec2, efs, vpc_id, domain_id, file_systems, groups) -> bool:
    mount_targets_left = False
    for file_system in file_systems:
        mount_targets = file_system["MountTargets"]
        if any(target["VpcId"] != vpc_id for target in mount_targets):
            logger.info("%s is mounted outside %s: left alone", file_system["FileSystemId"], vpc_id)
            continue
        for target in mount_targets:
            mount_targets_left = True
            if target["LifeCycleState"] not in ("deleting", "deleted"):
                logger.info("Deleting mount target %s of %s", target["MountTargetId"], domain_id)
                _ignoring(("MountTargetNotFound",), efs.delete_mount_target, MountTargetId=target["MountTargetId"])
        if not mount_targets:
            logger.info("Deleting file system %s of %s", file_system["FileSystemId"], domain_id)
            try:
                _ignoring(("FileSystemNotFound",), efs.delete_file_system, FileSystemId=file_system["FileSystemId"])
            except ClientError as error:
                if _code(error) != "FileSystemInUse":
                    raise
                mount_targets_left = True  # EFS has not yet noticed its last mount target went
    if mount_targets_left:
        # The security groups stay attached to the mount targets' network interfaces until they go.
        return False
    return _delete_security_groups(ec2, groups)


def _delete_security_groups(ec2, groups) -> bool:
    # Each group's rules name the other, so neither can be deleted before both lose their rules.
    for group in groups:
        if group["IpPermissions"]:
            _ignoring(("InvalidPermission.NotFound", "InvalidGroup.NotFound"), ec2.revoke_security_group_ingress,
                      GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
        if group["IpPermissionsEgress"]:
            _ignoring(("InvalidPermission.NotFound", "InvalidGroup.NotFound"), ec2.revoke_security_group_egress,
                      GroupId=group["GroupId"], IpPermissions=group["IpPermissionsEgress"])
    finished = True
    for group in groups:
        logger.info("Deleting security group %s (%s)", group["GroupId"], group["GroupName"])
        try:
            _ignoring(("InvalidGroup.NotFound",), ec2.delete_security_group, GroupId=group["GroupId"])
        except ClientError as error:
            if _code(error) != "DependencyViolation":
                raise
            # A network interface that is still going away; the next poll tries again.
            logger.info("%s is still in use: %s", group["GroupId"], error)
            finished = False
    return finished


def _nfs_security_groups(ec2, vpc_id) -> dict:
    """{domain id: [security group]} for the domains' NFS groups in the VPC."""
    groups = {}
    pages = ec2.get_paginator("describe_security_groups").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": NFS_GROUP_NAMES}])
    for page in pages:
        for group in page["SecurityGroups"]:
            match = NFS_GROUP_PATTERN.fullmatch(group["GroupName"])
            if match and group["VpcId"] == vpc_id:
                groups.setdefault(match.group(1), []).append(group)
    return groups


def _domain_file_systems(efs) -> dict:
    """{domain id: [file system with its "MountTargets"]} for every file system SageMaker made a domain."""
    file_systems = {}
    for page in efs.get_paginator("describe_file_systems").paginate():
        for file_system in page["FileSystems"]:
            if file_system["LifeCycleState"] in ("deleting", "deleted"):
                continue
            tags = {tag["Key"]: tag["Value"] for tag in file_system.get("Tags", [])}
            match = DOMAIN_ARN_PATTERN.fullmatch(tags.get(DOMAIN_TAG, ""))
            if match:
                file_systems.setdefault(match.group(1), []).append(
                    {**file_system, "MountTargets": _mount_targets(efs, file_system["FileSystemId"])})
    return file_systems


def _mount_targets(efs, file_system_id) -> list:
    targets = []
    try:
        for page in efs.get_paginator("describe_mount_targets").paginate(FileSystemId=file_system_id):
            targets += [target for target in page["MountTargets"] if target["LifeCycleState"] != "deleted"]
    except ClientError as error:
        if _code(error) != "FileSystemNotFound":
            raise
    return targets


def _mount_targets_in(file_systems, vpc_id) -> bool:
    return any(target["VpcId"] == vpc_id for fs in file_systems for target in fs["MountTargets"])


def _domain_state(sagemaker, domain_id) -> str:
    """"gone", "deleting" or "live"."""
    try:
        status = sagemaker.describe_domain(DomainId=domain_id)["Status"]
    except ClientError as error:
        if _code(error) == "ResourceNotFound":
            return "gone"
        raise
    return "deleting" if status == "Deleting" else "live"


def _ignoring(codes, operation, **parameters):
    """Call an operation whose work is already done when it fails with one of `codes`."""
    try:
        operation(**parameters)
    except ClientError as error:
        if _code(error) not in codes:
            raise


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
