"""The EC2 driver under the contract suite: a real ``moto_server`` on 127.0.0.1 (started
here, with moto's AMI, key-pair and instance-type validation on), two AMIs registered in
it, a repository entry naming them (the frontend's by name, the compute's by id), and a
site config selecting the ec2 driver with its endpoint at the server. What the back-end
holds is read with plain boto3 calls of our own; `pragma` processes get an environment
that keeps boto3 off this machine's AWS config and the metadata service."""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pcc.common.tomlcfg import TomlReader
from pcc.dev.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer, isolated_aws_env
from pcc.drivers.ec2 import Ec2Driver
from pcc.site import config as site_config
from pcc.site.service import SiteService
from tests.integration.drivers.harness import Harness, vc_in

SITE = "ec2test"
IMAGE = "tiny"
AMI_NAME = "pcc-tiny-test"  # the frontend's, named in the entry by name
COMPUTE_AMI_NAME = "pcc-tiny-compute-test"  # the compute's, named in the entry by id
MISSING_AMI = "ami-00000000000000dea"  # an id no image has

VC_IN = vc_in(
    "Tiny test cluster on EC2 (the AMI is named, not a disk)",
    ("tiny-frontend", 256, "<metadata><ec2:image xmlns:ec2='urn:pcc:ec2:1' name='{ami}'/></metadata>"),
    ("tiny-compute", 256, "<metadata><ec2:image xmlns:ec2='urn:pcc:ec2:1' id='{compute_ami}'/></metadata>"),
)

SITE_TOML = """[site]
name = "{site}"
deployment_type = "ec2 (moto_server)"
cpus = 64
memory_mb = 262144

[repository]
path = "repository"

[staging]
path = "staging"

[driver]
name = "ec2"
boot_timeout_s = 60

[driver.ec2]
region = "{region}"
endpoint_url = "{endpoint}"
access_key_id = "{key_id}"
secret_access_key_file = "ec2-secret"
poll_interval_s = 0.2
clean_timeout_s = 30

[[driver.ec2.instance_types]]
name = "t3.nano"
vcpus = 2
memory_mib = 512

[[driver.ec2.instance_types]]
name = "t3.micro"
vcpus = 2
memory_mib = 1024

[[driver.ec2.instance_types]]
name = "t3.xlarge"
vcpus = 4
memory_mib = 16384

[network]
mode = "user"
private_cidr = "10.1.0.0/24"
"""


def register_ami(client: Any, name: str = AMI_NAME) -> str:
    return str(
        client.register_image(
            Name=name,
            Architecture="x86_64",
            RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}}
            ],
        )["ImageId"]
    )


def write_repository(root: Path, compute_ami: str) -> None:
    (root / "repository" / IMAGE).mkdir(parents=True, exist_ok=True)
    (root / "repository" / "vcdb.txt").write_text(f"{IMAGE},{IMAGE}/vc-in.xml\n")
    (root / "repository" / IMAGE / "vc-in.xml").write_text(
        VC_IN.format(ami=AMI_NAME, compute_ami=compute_ami)
    )


def write_site(root: Path, endpoint: str, compute_ami: str) -> Path:
    """A repository with the EC2 entry and a site config using the ec2 driver at ``endpoint``."""
    write_repository(root, compute_ami)
    (root / "staging").mkdir(exist_ok=True)
    secret = root / "ec2-secret"
    secret.write_text(SECRET_ACCESS_KEY + "\n")
    secret.chmod(0o600)
    path = root / "site.toml"
    path.write_text(SITE_TOML.format(site=SITE, region=REGION, endpoint=endpoint, key_id=ACCESS_KEY_ID))
    return path


def make_service(path: Path) -> SiteService:
    """The site tool's service over the config at ``path``, its driver built from the
    config's ``[driver.ec2]`` table (the same as the registry does once "ec2" is built in)."""
    cfg = site_config.load(path)
    bare = SiteService(cfg)
    driver = Ec2Driver.from_toml(TomlReader(cfg.path, cfg.driver_settings, "driver.ec2"), bare.site_context)
    return SiteService(cfg, driver)


def _tag_filters(cluster: str) -> list[dict[str, Any]]:
    return [
        {"Name": "tag:pcc:site", "Values": [SITE]},
        {"Name": "tag:pcc:cluster", "Values": [cluster]},
    ]


def leftovers(client: Any, cluster: str) -> list[str]:
    """Everything moto still holds for the cluster, by tag and by the names the driver uses."""
    out: list[str] = []
    filters = _tag_filters(cluster)
    for r in client.describe_instances(Filters=filters)["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] != "terminated":
                out.append(f"instance {i['InstanceId']} ({i['State']['Name']})")
    out += [f"volume {v['VolumeId']}" for v in client.describe_volumes(Filters=filters)["Volumes"]]
    out += [
        f"interface {n['NetworkInterfaceId']}"
        for n in client.describe_network_interfaces(Filters=filters)["NetworkInterfaces"]
    ]
    out += [f"address {a['PublicIp']}" for a in client.describe_addresses(Filters=filters)["Addresses"]]
    keys = {k["KeyName"] for k in client.describe_key_pairs(Filters=filters)["KeyPairs"]}
    keys |= {
        k["KeyName"]
        for k in client.describe_key_pairs()["KeyPairs"]
        if k["KeyName"] == f"pcc-{SITE}-{cluster}"
    }
    out += [f"key pair {k}" for k in sorted(keys)]
    groups = {g["GroupId"] for g in client.describe_security_groups(Filters=filters)["SecurityGroups"]}
    groups |= {
        g["GroupId"]
        for g in client.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [f"pcc-{SITE}-{cluster}"]}]
        )["SecurityGroups"]
    }
    out += [f"security group {g}" for g in sorted(groups)]
    out += [f"subnet {s['SubnetId']}" for s in client.describe_subnets(Filters=filters)["Subnets"]]
    return out


def instance_of(client: Any, cluster: str, node: str) -> dict[str, Any]:
    filters = [*_tag_filters(cluster), {"Name": "tag:pcc:node", "Values": [node]}]
    found = [
        i
        for r in client.describe_instances(Filters=filters)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} live instances for {cluster}/{node}")
    return found[0]


def context_of(client: Any, cluster: str, node: str) -> tuple[str, str]:
    """The node's user-data as EC2 holds it (DescribeInstanceAttribute), and the vc-out.xml
    its cloud-config writes."""
    instance = instance_of(client, cluster, node)
    attr = client.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    raw = base64.b64decode(attr["UserData"]["Value"])
    if raw[:2] == b"\x1f\x8b":  # cloud-init's gzip-compressed user-data
        raw = gzip.decompress(raw)
    user_data = raw.decode()
    import yaml  # PyYAML comes with moto[server]

    doc = yaml.safe_load(user_data)
    vc_out = next(
        (f["content"] for f in doc.get("write_files", []) if f.get("path") == "/root/vc-out.xml"), ""
    )
    return user_data, vc_out


def make_ec2_harness(tmp_path: Path) -> Harness:
    previous = os.environ.get("AWS_EC2_METADATA_DISABLED")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    server = MotoServer.start(log_dir=tmp_path / "moto")
    try:
        client = server.client()
        register_ami(client, AMI_NAME)
        compute_ami = register_ami(client, COMPUTE_AMI_NAME)
        service = make_service(write_site(tmp_path, server.url, compute_ami))
    except BaseException:
        server.stop()
        raise

    @contextlib.contextmanager
    def fail_after_first_node() -> Iterator[None]:
        """The repository entry names, for the compute, an AMI id EC2 never had: the
        driver uses ids as given, so the frontend launches and then EC2 (moto, with AMI
        validation on) refuses the compute (InvalidAMIID.NotFound)."""
        write_repository(tmp_path, MISSING_AMI)
        try:
            yield
        finally:
            write_repository(tmp_path, compute_ami)

    def stop() -> None:
        server.stop()
        if previous is None:
            os.environ.pop("AWS_EC2_METADATA_DISABLED", None)
        else:
            os.environ["AWS_EC2_METADATA_DISABLED"] = previous

    return Harness(
        name="ec2",
        service=service,
        image=IMAGE,
        supports_ent=False,
        leftovers=lambda cluster: leftovers(client, cluster),
        context_of=lambda cluster, node: context_of(client, cluster, node),
        fail_after_first_node=fail_after_first_node,
        stop=stop,
        env=isolated_aws_env(tmp_path),
    )
