"""The EC2 driver without EC2: its settings, instance-type table, state table, tags and
filters, AMI references, subnet and addresses, user-data, and what it refuses up front."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from lxml import etree

from pcc.common.errors import ConfigError, DriverError, UnsupportedError
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import FEATURE_ENT, FEATURE_PUBLIC_ADDRESS, ClusterSpec, EntRequest, NodeState, Role
from pcc.drivers.ec2 import Ec2Driver, Ec2Settings, plan
from pcc.drivers.ec2.types import DEFAULT_INSTANCE_TYPES, InstanceType, choose_instance_type
from pcc.site import context
from pcc.site.service import BootRequest, SiteService
from tests.integration.drivers.harness_ec2 import AMI_NAME, SITE, make_service, write_site

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 alice@lab"
COMPUTE_AMI = "ami-0123456789abcdef0"


def settings(tmp_path: Path, data: dict[str, object]) -> Ec2Settings:
    return Ec2Settings.from_toml(TomlReader(tmp_path / "site.toml", data, "driver.ec2"))


@pytest.fixture
def service(tmp_path: Path) -> SiteService:
    return make_service(write_site(tmp_path, "http://127.0.0.1:9", COMPUTE_AMI))


def spec_of(service: SiteService, cpus: int = 2, cluster: str = "c1") -> ClusterSpec:
    image = service.repository.image("tiny")
    return service.plan(BootRequest("tiny", cpus, Path("/dev/null"), cluster=cluster), image, None, KEY)


# -- settings ---------------------------------------------------------------------------
def test_an_empty_table_gives_the_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path, {})
    assert s == Ec2Settings()
    assert s.region == "us-east-1" and s.endpoint_url is None and s.vpc_id is None
    assert s.instance_types == DEFAULT_INSTANCE_TYPES and s.image_owners == ("self",)
    assert s.secret_access_key() is None


def test_a_full_table_is_read_into_typed_settings(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("  s3cr3t  \n")
    s = settings(
        tmp_path,
        {
            "region": "eu-west-1",
            "endpoint_url": "https://ec2.example.org:8773/services/Cloud",
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key_file": "secret",
            "vpc_id": "vpc-0123abcd",
            "subnet_pool": "10.20.0.0/16",
            "subnet_prefix": 26,
            "availability_zone": "eu-west-1b",
            "ssh_cidrs": ["192.0.2.0/24"],
            "image_owners": ["self", "123456789012"],
            "images": {"tiny": "ami-0abcdef1", "big": "pcc-big-2024"},
            "instance_types": [
                {"name": "m5.large", "vcpus": 2, "memory_mib": 8192},
                {"name": "c5.xlarge", "vcpus": 4, "memory_mib": 8192},
            ],
            "clean_timeout_s": 120,
            "poll_interval_s": 0.5,
        },
    )
    assert s.secret_access_key_file == tmp_path / "secret"  # relative to the config file
    assert s.secret_access_key() == "s3cr3t"
    assert "s3cr3t" not in repr(s)  # the secret is read when used, never kept
    assert (s.vpc_id, s.subnet_pool, s.subnet_prefix) == ("vpc-0123abcd", "10.20.0.0/16", 26)
    assert s.images == {"tiny": "ami-0abcdef1", "big": "pcc-big-2024"}
    assert [t.name for t in s.instance_types] == ["m5.large", "c5.xlarge"]
    assert (s.clean_timeout_s, s.poll_interval_s) == (120.0, 0.5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"regoin": "x"}, r"\[driver\.ec2\] regoin: unknown setting \(known: .*region"),
        ({"region": "Not A Region"}, r"region: not a region name"),
        ({"endpoint_url": "ftp://x"}, r"endpoint_url: expected an http:// or https:// URL"),
        ({"access_key_id": "AKIA1"}, r"secret_access_key_file: access_key_id and secret_access_key_file go"),
        ({"secret_access_key_file": "s"}, r"access_key_id: access_key_id and secret_access_key_file go"),
        (
            {"profile": "p", "access_key_id": "AKIA1", "secret_access_key_file": "s"},
            r"profile: give a profile or access_key_id, not both",
        ),
        ({"profile": "bad profile"}, r"profile: not a profile name"),
        ({"vpc_id": "vpc-XYZ"}, r"vpc_id: not a VPC id"),
        ({"subnet_pool": "10.0.0.0/33"}, r"subnet_pool: not an IPv4 network"),
        ({"subnet_prefix": 29}, r"subnet_prefix: EC2 subnets are /16 to /28"),
        ({"ssh_cidrs": ["10.0.0.1/8"]}, r"ssh_cidrs: not an IPv4 network"),
        ({"image_owners": ["someone"]}, r"image_owners: expected self, amazon"),
        ({"image_owners": []}, r"image_owners: must name at least one owner"),
        ({"images": {"tiny": "<script>"}}, r"\[driver\.ec2\.images\] tiny: expected an AMI id"),
        ({"images": {"tiny": 7}}, r"\[driver\.ec2\.images\] tiny: expected an AMI id"),
        ({"instance_types": []}, r"instance_types: must list at least one"),
        ({"instance_types": ["t3.nano"]}, r"instance_types: entry 0 is not a table"),
        (
            {"instance_types": [{"name": "t3.nano", "vcpus": 2, "memory_mib": 512, "gpus": 1}]},
            r"\[driver\.ec2\.instance_types\[0\]\] gpus: unknown setting",
        ),
        (
            {"instance_types": [{"name": "T3 nano", "vcpus": 2, "memory_mib": 512}]},
            r"instance_types\[0\]\] name: not an instance type name",
        ),
        (
            {"instance_types": [{"name": "t3.nano", "vcpus": 0, "memory_mib": 512}]},
            r"instance_types\[0\]\] vcpus: must be > 0",
        ),
        (
            {
                "instance_types": [
                    {"name": "t3.nano", "vcpus": 2, "memory_mib": 512},
                    {"name": "t3.nano", "vcpus": 2, "memory_mib": 512},
                ]
            },
            r"instance_types\[1\]\] name: t3.nano is listed twice",
        ),
        ({"poll_interval_s": 0}, r"poll_interval_s: must be > 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    tmp_path: Path, data: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, data)


def test_an_unreadable_secret_file_is_a_config_error_without_the_secret(tmp_path: Path) -> None:
    s = settings(tmp_path, {"access_key_id": "AKIA1", "secret_access_key_file": "missing"})
    with pytest.raises(ConfigError, match=r"secret_access_key_file .*missing: cannot read"):
        s.secret_access_key()
    (tmp_path / "two").write_text("a\nb\n")
    s = settings(tmp_path, {"access_key_id": "AKIA1", "secret_access_key_file": "two"})
    with pytest.raises(ConfigError, match="expected one line") as err:
        s.secret_access_key()
    assert "a" not in str(err.value).rsplit(":", 1)[1]


def test_the_harness_site_selects_the_driver_with_its_endpoint(service: SiteService) -> None:
    driver = service.driver
    assert isinstance(driver, Ec2Driver) and driver.name == "ec2"
    assert driver.settings.endpoint_url == "http://127.0.0.1:9" and driver.settings.access_key_id == "testing"
    assert service.config.driver == "ec2" and service.config.network.mode == "user"


def test_explicit_credentials_build_a_client_of_the_endpoint_alone(service: SiteService) -> None:
    pytest.importorskip("boto3")
    client = service.driver.ex_client  # type: ignore[attr-defined]  # building it sends nothing
    assert client.meta.endpoint_url == "http://127.0.0.1:9" and client.meta.region_name == "us-east-1"
    creds = client._request_signer._credentials  # what will sign its requests
    assert creds.access_key == "testing" and creds.secret_key == "testing"


# -- instance types ---------------------------------------------------------------------
TABLE = (
    InstanceType(4, 16384, "t3.xlarge"),
    InstanceType(2, 512, "t3.nano"),
    InstanceType(2, 1024, "t3.micro"),
    InstanceType(8, 8192, "c5.2xlarge"),
)


@pytest.mark.parametrize(
    ("vcpus", "memory", "expected"),
    [
        (1, 128, "t3.nano"),
        (2, 512, "t3.nano"),
        (2, 513, "t3.micro"),
        (3, 128, "t3.xlarge"),
        (4, 16384, "t3.xlarge"),
        (5, 1024, "c5.2xlarge"),
        (4, 16385, None),
        (9, 1, None),
    ],
)
def test_the_smallest_instance_type_that_fits_is_chosen(
    vcpus: int, memory: int, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(UnsupportedError, match=f"no instance type at this site has {vcpus} vCPUs"):
            choose_instance_type(TABLE, vcpus, memory)
        return
    assert choose_instance_type(TABLE, vcpus, memory).name == expected
    assert choose_instance_type(tuple(reversed(TABLE)), vcpus, memory).name == expected  # order-free


def test_the_default_table_fits_small_and_large_nodes() -> None:
    assert choose_instance_type(DEFAULT_INSTANCE_TYPES, 1, 128).name == "t3.nano"
    assert choose_instance_type(DEFAULT_INSTANCE_TYPES, 2, 3000).name == "t3.medium"
    assert choose_instance_type(DEFAULT_INSTANCE_TYPES, 12, 1024).name == "m5.4xlarge"
    with pytest.raises(UnsupportedError, match=r"largest: m5\.24xlarge \(96 vCPUs, 393216 MiB\)"):
        choose_instance_type(DEFAULT_INSTANCE_TYPES, 128, 1024)


# -- states, tags, filters --------------------------------------------------------------
@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("pending", NodeState.PENDING),
        ("running", NodeState.RUNNING),
        ("stopping", NodeState.STOPPED),
        ("stopped", NodeState.STOPPED),
        ("shutting-down", NodeState.STOPPED),
        ("terminated", NodeState.STOPPED),
        ("rebooting-someday", NodeState.UNKNOWN),
        ("", NodeState.UNKNOWN),
    ],
)
def test_native_states_map_through_the_table(native: str, state: NodeState) -> None:
    assert plan.node_state(native) is state
    assert plan.NATIVE_STATES.get(native, NodeState.UNKNOWN) is state


def test_everything_is_tagged_and_found_by_site_and_cluster() -> None:
    tags = plan.tags("s1", "c1", "pcc-s1-c1", **{plan.TAG_NODE: "c1-frontend", plan.TAG_ROLE: "frontend"})
    assert {t["Key"]: t["Value"] for t in tags} == {
        "Name": "pcc-s1-c1",
        "pcc:site": "s1",
        "pcc:cluster": "c1",
        "pcc:node": "c1-frontend",
        "pcc:role": "frontend",
    }
    assert plan.tag_specs(["instance", "volume"], tags) == [
        {"ResourceType": "instance", "Tags": tags},
        {"ResourceType": "volume", "Tags": tags},
    ]
    assert plan.cluster_filters("s1", "c1") == [
        {"Name": "tag:pcc:site", "Values": ["s1"]},
        {"Name": "tag:pcc:cluster", "Values": ["c1"]},
    ]
    assert plan.cluster_filters("s1", None) == [{"Name": "tag:pcc:site", "Values": ["s1"]}]
    assert plan.tag_dict({"Tags": tags})["pcc:role"] == "frontend" and plan.tag_dict({}) == {}
    assert plan.resource_name("s1", "c1") == "pcc-s1-c1"


# -- images -----------------------------------------------------------------------------
def test_each_role_boots_the_ami_its_repository_entry_names(service: SiteService) -> None:
    refs = plan.image_refs(spec_of(service), {}, ("self",))
    assert refs == {"frontend": plan.AmiRef(AMI_NAME, ("self",)), "compute": plan.AmiRef(COMPUTE_AMI)}
    assert refs["compute"].is_id and not refs["frontend"].is_id


def test_the_site_table_overrides_the_repository_entry(service: SiteService) -> None:
    refs = plan.image_refs(spec_of(service), {"tiny": "ami-0fedcba9"}, ("self",))
    assert refs == {"frontend": plan.AmiRef("ami-0fedcba9"), "compute": plan.AmiRef("ami-0fedcba9")}
    by_name = plan.image_refs(spec_of(service), {"tiny": "golden"}, ("amazon",))
    assert by_name["compute"] == plan.AmiRef("golden", ("amazon",))


class Tpl:
    def __init__(self, inner: str) -> None:
        self.domain_xml = f"<domain><metadata>{inner}</metadata></domain>"


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        ("<ec2:image xmlns:ec2='urn:pcc:ec2:1' id='ami-0abc1234'/>", plan.AmiRef("ami-0abc1234")),
        ("<i:image xmlns:i='urn:pcc:ec2:1' name='pcc-x' owner='amazon'/>", plan.AmiRef("pcc-x", ("amazon",))),
        ("<image id='ami-0abc1234'/>", None),  # not in PCC's EC2 namespace
        ("", None),
    ],
)
def test_the_ami_element_is_read_from_a_roles_domain(inner: str, expected: plan.AmiRef | None) -> None:
    assert plan.ami_in_template(Tpl(inner), "frontend", "img") == expected
    assert plan.ami_in_template(None, "frontend", "img") is None


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        ("<e:image xmlns:e='urn:pcc:ec2:1' id='ami-0abc1234' name='x1y'/>", "exactly one of id= or name="),
        ("<e:image xmlns:e='urn:pcc:ec2:1'/>", "exactly one of id= or name="),
        ("<e:image xmlns:e='urn:pcc:ec2:1' id='ami-zz'/>", "is not an AMI id"),
        ("<e:image xmlns:e='urn:pcc:ec2:1' name='x'/>", "is not an AMI name"),
        ("<e:image xmlns:e='urn:pcc:ec2:1' name='xyz' owner='me'/>", "owner='me' is not"),
        (
            "<e:image xmlns:e='urn:pcc:ec2:1' id='ami-0abc1234'/>" * 2,
            "appears 2 times",
        ),
    ],
)
def test_a_bad_ami_element_is_refused(inner: str, message: str) -> None:
    with pytest.raises(DriverError, match=message):
        plan.ami_in_template(Tpl(inner), "compute", "img")


def test_an_image_without_an_ami_is_not_supported_at_this_site(service: SiteService) -> None:
    spec = spec_of(service)
    bare = dataclasses.replace(
        spec, image=dataclasses.replace(spec.image, templates={"frontend": None, "compute": None})
    )
    with pytest.raises(UnsupportedError, match=r"names no AMI for its compute .* not supported at this site"):
        plan.image_refs(bare, {}, ("self",))


def test_of_several_amis_of_a_name_the_newest_available_is_chosen() -> None:
    images = [
        {"ImageId": "ami-1", "CreationDate": "2024-01-01T00:00:00Z", "State": "available"},
        {"ImageId": "ami-3", "CreationDate": "2025-06-01T00:00:00Z", "State": "pending"},
        {"ImageId": "ami-2", "CreationDate": "2024-05-01T00:00:00Z", "State": "available"},
    ]
    assert plan.newest_image(images)["ImageId"] == "ami-2"  # type: ignore[index]
    assert plan.newest_image([]) is None


# -- subnet and addresses ---------------------------------------------------------------
def test_a_subnet_is_carved_where_no_other_is() -> None:
    pool = ipaddress.IPv4Network("172.31.0.0/16")
    taken = [ipaddress.IPv4Network(f"172.31.{i * 16}.0/20") for i in range(6)]
    assert plan.carve_subnet(pool, 24, taken) == ipaddress.IPv4Network("172.31.96.0/24")
    assert plan.carve_subnet(pool, 24, []) == ipaddress.IPv4Network("172.31.0.0/24")
    assert plan.carve_subnet(pool, 24, [pool]) is None
    assert plan.carve_subnet(ipaddress.IPv4Network("10.0.0.0/24"), 16, []) is None


def test_nodes_keep_their_planned_offsets_except_where_ec2_reserves_the_address(service: SiteService) -> None:
    spec = spec_of(service, cpus=2)
    subnet = ipaddress.IPv4Network("172.31.96.0/24")
    assert plan.address_map(spec, subnet) == {
        "c1-frontend": "172.31.96.4",  # planned .1: EC2 keeps .0-.3
        "c1-compute-0": "172.31.96.10",
        "c1-compute-1": "172.31.96.11",
    }
    alone = spec_of(service, cpus=0)  # a frontend alone has no private interface planned
    assert plan.address_map(alone, subnet) == {"c1-frontend": "172.31.96.4"}
    tiny = ipaddress.IPv4Network("172.31.96.0/28")  # offsets 4..14 usable: .10, .11 still fit
    assert plan.address_map(spec, tiny)["c1-compute-1"] == "172.31.96.11"


def test_a_subnet_too_small_for_the_cluster_is_refused(service: SiteService) -> None:
    spec = spec_of(service, cpus=12)
    with pytest.raises(UnsupportedError, match="13 nodes do not fit a /28 subnet"):
        plan.address_map(spec, ipaddress.IPv4Network("172.31.96.0/28"))


def test_the_documents_name_the_addresses_nodes_have_on_ec2(service: SiteService) -> None:
    spec = spec_of(service, cpus=1)
    subnet = ipaddress.IPv4Network("172.31.96.0/24")
    addresses = plan.address_map(spec, subnet)
    dns = plan.vpc_resolver("172.31.0.0/16")
    assert dns == ("172.31.0.2",)
    nodes = plan.ec2_nodes(spec, subnet, addresses, "198.51.100.7", dns)
    fe, compute = nodes
    assert [(i.network, i.ip, i.mac) for i in fe.interfaces] == [
        ("public", "198.51.100.7", ""),
        ("private", "172.31.96.4", ""),
    ]
    assert [(i.ip, i.prefix, i.gateway) for i in compute.interfaces] == [("172.31.96.10", 24, "172.31.96.4")]
    docs = context.documents(nodes, KEY, dns)
    vc = etree.fromstring(docs["c1-frontend"].vc_out.encode(), etree.XMLParser(resolve_entities=False))
    assert vc.xpath("//compute/node[@name='c1-compute-0']/@ip") == ["172.31.96.10"]
    assert vc.xpath("//frontend/public/@ip") == ["198.51.100.7"]
    assert vc.xpath("//dns/@ip") == ["172.31.0.2"] and vc.findtext("key") == KEY
    assert (fe.name, fe.role, fe.vcpus) == (spec.nodes[0].name, Role.FRONTEND, spec.nodes[0].vcpus)


# -- user data --------------------------------------------------------------------------
def test_user_data_is_sent_as_is_or_compressed_and_reads_back(service: SiteService) -> None:
    docs = spec_of(service, cpus=1).documents["c1-frontend"]
    raw = plan.encode_user_data(docs.user_data)
    assert raw == docs.user_data.encode() and plan.decode_user_data(raw) == docs.user_data
    assert plan.vc_out_of(docs.user_data) == docs.vc_out
    big = docs.user_data + "".join(f"# padding line {i} with some text\n" for i in range(800))
    packed = plan.encode_user_data(big)
    assert packed[:2] == b"\x1f\x8b" and len(packed) <= plan.USER_DATA_LIMIT
    assert plan.decode_user_data(packed) == big
    noise = "".join(f"{i * 7919 % 1000003:x}" for i in range(20000))  # does not compress to 16 KiB
    with pytest.raises(UnsupportedError, match="EC2 takes 16384"):
        plan.encode_user_data(noise)
    assert plan.vc_out_of("#cloud-config\nhostname: x\n") == ""


# -- refused before anything is held ------------------------------------------------------
def test_ent_and_site_public_addresses_are_not_supported_at_this_site(service: SiteService) -> None:
    driver = service.driver
    assert FEATURE_ENT not in driver.features and FEATURE_PUBLIC_ADDRESS not in driver.features
    spec = spec_of(service)
    driver.validate(spec)
    ent = dataclasses.replace(
        spec, network=dataclasses.replace(spec.network, ent=(EntRequest("e0", "10.9.0.0/24"),))
    )
    with pytest.raises(UnsupportedError, match="not supported at this site"):
        driver.validate(ent)
    public = dataclasses.replace(spec, network=dataclasses.replace(spec.network, public_address="192.0.2.9"))
    with pytest.raises(UnsupportedError, match="not supported at this site"):
        driver.validate(public)


def test_a_node_no_instance_type_fits_is_refused(service: SiteService) -> None:
    spec = spec_of(service)
    huge = dataclasses.replace(
        spec, nodes=(dataclasses.replace(spec.nodes[0], memory_mib=1 << 20), *spec.nodes[1:])
    )
    with pytest.raises(UnsupportedError, match="no instance type at this site has 1 vCPUs and 1048576 MiB"):
        service.driver.validate(huge)
    types = service.driver.ex_instance_types(spec)  # type: ignore[attr-defined]
    assert {n: t.name for n, t in types.items()} == {
        "c1-frontend": "t3.nano",
        "c1-compute-0": "t3.nano",
        "c1-compute-1": "t3.nano",
    }
    assert SITE == "ec2test"
