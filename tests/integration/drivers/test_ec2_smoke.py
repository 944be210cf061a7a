"""The EC2 harness works end to end: through the site tool's own service, a frontend and
one compute booted on a real moto_server, listed, found in moto by plain boto3 calls, then
cleaned until moto holds nothing of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pcc.common.errors import UnsupportedError
from pcc.common.protocol import NodeState, Role
from pcc.site.service import BootRequest
from tests.integration.drivers.harness import Harness
from tests.integration.drivers.harness_ec2 import SITE, instance_of, make_ec2_harness

pytest.importorskip("boto3")
pytest.importorskip("moto")

pytestmark = [pytest.mark.slow]

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl smoke@pcc"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = make_ec2_harness(tmp_path_factory.mktemp("ec2"))
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "id.pub"
    path.write_text(KEY + "\n")
    return path


def test_boot_list_clean(harness: Harness, key_file: Path) -> None:
    client = harness.service.driver.ex_client  # type: ignore[attr-defined]
    result = harness.service.boot(
        BootRequest(image=harness.image, cpus=1, key_path=key_file, cluster="smoke")
    )
    assert result.message == "booted"
    nodes = harness.service.list_cluster("smoke")
    assert [(n.name, n.role) for n in nodes] == [
        ("smoke-frontend", Role.FRONTEND),
        ("smoke-compute-0", Role.COMPUTE),
    ]
    assert all(n.state is NodeState.RUNNING for n in nodes)
    assert all((n.vcpus, n.memory_mib) == (2, 512) for n in nodes)  # t3.nano, as EC2 describes it
    frontend, compute = nodes
    assert frontend.public_ip and frontend.ssh_port == 22 and compute.public_ip is None

    # What moto holds, by plain boto3 calls.
    name = f"pcc-{SITE}-smoke"
    tag = [{"Name": "tag:pcc:cluster", "Values": ["smoke"]}]
    (keypair,) = client.describe_key_pairs(KeyNames=[name])["KeyPairs"]
    assert {"Key": "pcc:cluster", "Value": "smoke"} in keypair["Tags"]
    (group,) = client.describe_security_groups(Filters=tag)["SecurityGroups"]
    assert group["GroupName"] == name
    perms = group["IpPermissions"]
    assert any(
        p["IpProtocol"] == "-1" and p["UserIdGroupPairs"][0]["GroupId"] == group["GroupId"] for p in perms
    )
    assert any(p.get("FromPort") == 22 and p["IpRanges"][0]["CidrIp"] == "0.0.0.0/0" for p in perms)
    (subnet,) = client.describe_subnets(Filters=tag)["Subnets"]
    (address,) = client.describe_addresses(Filters=tag)["Addresses"]
    assert address["PublicIp"] == frontend.public_ip
    fe = instance_of(client, "smoke", "smoke-frontend")
    co = instance_of(client, "smoke", "smoke-compute-0")
    assert fe["SubnetId"] == co["SubnetId"] == subnet["SubnetId"]
    assert address["InstanceId"] == fe["InstanceId"]
    assert fe["KeyName"] == name and fe["SourceDestCheck"] is False and co["SourceDestCheck"] is True
    # (moto shows a launch's groups on its interface, not in the instance's SecurityGroups)
    assert [g["GroupId"] for g in fe["NetworkInterfaces"][0]["Groups"]] == [group["GroupId"]]
    assert frontend.private_ip == fe["PrivateIpAddress"] and compute.private_ip == co["PrivateIpAddress"]
    offset = int(subnet["CidrBlock"].split("/")[0].split(".")[-1])
    assert co["PrivateIpAddress"].rsplit(".", 1)[1] == str(offset + 10)  # the site's planned .10

    user_data, vc_out = harness.context_of("smoke", "smoke-frontend")
    assert KEY in user_data and "<vc>" in vc_out
    assert f'ip="{co["PrivateIpAddress"]}"' in vc_out and frontend.public_ip in vc_out

    again = harness.service.boot(BootRequest(image=harness.image, cpus=1, key_path=key_file, cluster="smoke"))
    assert again.message == "already booted"
    assert harness.leftovers("smoke")

    assert "smoke" in harness.service.driver.ex_clusters()  # type: ignore[attr-defined]
    harness.service.clean("smoke")
    assert harness.leftovers("smoke") == []
    assert "smoke" not in harness.service.driver.ex_clusters()  # type: ignore[attr-defined]
    assert harness.service.list_cluster("smoke") == []
    assert harness.service.clean("smoke").message == "nothing to clean"


def test_failure_half_way_leaves_nothing(harness: Harness, key_file: Path) -> None:
    with harness.fail_after_first_node(), pytest.raises(Exception, match="InvalidAMIID"):
        harness.service.boot(BootRequest(image=harness.image, cpus=1, key_path=key_file, cluster="half"))
    assert harness.leftovers("half") == []
    assert harness.service.list_cluster("half") == []
    # It failed after its first node: the frontend was launched (and is terminated now).
    client = harness.service.driver.ex_client  # type: ignore[attr-defined]
    made = [
        (i["Tags"], i["State"]["Name"])
        for r in client.describe_instances(Filters=[{"Name": "tag:pcc:cluster", "Values": ["half"]}])[
            "Reservations"
        ]
        for i in r["Instances"]
    ]
    assert len(made) == 1 and made[0][1] == "terminated"
    assert {"Key": "pcc:node", "Value": "half-frontend"} in made[0][0]


def test_ent_is_not_supported(harness: Harness) -> None:
    import dataclasses

    from pcc.drivers.base import EntRequest

    image = harness.service.repository.image(harness.image)
    spec = harness.service.plan(BootRequest(image=harness.image, cpus=1, key_path=Path("-")), image)
    spec = dataclasses.replace(
        spec, network=dataclasses.replace(spec.network, ent=(EntRequest("ent0", "172.16.0.0/24"),))
    )
    with pytest.raises(UnsupportedError, match="not supported at this site"):
        harness.service.driver.validate(spec)
