"""The EC2 driver: a neutral cluster spec launched on Amazon EC2 or any EC2-compatible cloud
through boto3, and read back from EC2 alone (DescribeInstances and DescribeInstanceTypes),
never from notes of its own: it keeps no files.

What a cluster is made of, each tagged ``pcc:site``, ``pcc:cluster`` (and instances
``pcc:node``, ``pcc:role``), so that ``list``, ``clean`` and the controller's orphan scan
find it by tag:

* a key pair ``pcc-<site>-<cluster>`` holding the user's key;
* a security group of that name in the VPC: all traffic between the cluster's nodes, and
  SSH (TCP 22) from ``ssh_cidrs``; only the frontend has a public address, so from outside
  SSH reaches the frontend alone;
* a subnet of its own, carved from ``subnet_pool`` (default: the VPC's CIDR) with the
  prefix of the site's ``[network] private_cidr`` (or ``subnet_prefix``), the first block
  that overlaps no subnet of the VPC. Nodes keep the host offsets the site planned in its
  private network (computes .10, .11, ...) except where EC2 reserves the address (the first
  four and the last of a subnet: the frontend's planned .1 becomes .4). The subnet uses the
  VPC's main route table: the VPC needs an internet gateway route there for the frontend's
  public address to be reachable (the default VPC has one). Computes have no public
  address: they reach outside only through their frontend, which vc-out.xml names as
  their gateway (its source/destination check is off so that it may forward for them);
* an Elastic IP for the frontend, associated once it runs;
* one instance per node (its root volume deleted with it), launched into the subnet with
  the planned private address, IMDSv2 required, and its cloud-init user-data.

User-data carries the same contextualization as the other drivers
(:mod:`pcc.site.context`: hostname, the user's key for root and the default user, and
vc-out.xml written to /root/vc-out.xml), rebuilt with the addresses the nodes really get
on EC2: each node's one NIC in the subnet, the frontend's Elastic IP as its public
address, the VPC's resolver (base + 2) as DNS, no MACs (EC2 chooses them). It is
gzip-compressed, which cloud-init reads, when over EC2's 16 KiB.

Images: a repository entry names its AMI per role inside that role's ``<domain>``::

    <metadata>
      <ec2:image xmlns:ec2='urn:pcc:ec2:1' id='ami-0123456789abcdef0'/>
      <!-- or, by name (the newest available AMI of that name, owned by image_owners
           or by owner='...'): <ec2:image xmlns:ec2='urn:pcc:ec2:1' name='pcc-tiny'/> -->
    </metadata>

and a site may override it for both roles in ``[driver.ec2.images]`` (``tiny =
"ami-..."`` or an AMI name), e.g. for its region's copy. An AMI named by id is used as
given (EC2 checks it when launching); one named by name is looked up (DescribeImages).

Instance types come from ``[[driver.ec2.instance_types]]`` (``name``, ``vcpus``,
``memory_mib``; default: AWS's t3/m5 sizes, :data:`~pcc.drivers.ec2.types.DEFAULT_INSTANCE_TYPES`):
the smallest type with at least the node's vCPUs and memory. ``list`` reports the type's
real size (DescribeInstanceTypes; the site's table where the cloud does not answer that).

Settings (``[driver.ec2]``, read by :class:`~pcc.drivers.ec2.settings.Ec2Settings`):
``region``; ``endpoint_url`` (EC2-compatible clouds, tests); credentials from ``profile``,
or ``access_key_id`` with ``secret_access_key_file`` (read when connecting; with these the
driver reads no AWS config file at all), else boto3's usual chain; ``vpc_id`` (default:
the region's default VPC); ``subnet_pool``, ``subnet_prefix``, ``availability_zone``;
``ssh_cidrs`` (default everywhere); ``image_owners`` (default ``["self"]``);
``clean_timeout_s``; ``poll_interval_s``. The boot timeout is the site's
``[driver] boot_timeout_s``.

What it cannot do: ENT networks (no FEATURE_ENT: EC2 has no ENT in PCC's sense; asking
is refused as not supported at this site); site-allocated public addresses (no
FEATURE_PUBLIC_ADDRESS: a site using it runs ``[network] mode = "user"`` and its frontends
get Elastic IPs); repository volumes (no FEATURE_VOLUMES: images are AMIs); choosing MACs.
``shutdown`` stops running instances (EBS-backed; an instance-store instance that cannot
stop is terminated), ``clean`` terminates everything and deletes what the cluster held.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pcc.common.errors import DriverError, PccError, UnsupportedError
from pcc.drivers.base import (
    CleanResult,
    ClusterSpec,
    Driver,
    DriverHealth,
    NodeInfo,
    NodeSpec,
    NodeState,
    Role,
    SiteContext,
)
from pcc.drivers.ec2 import plan
from pcc.drivers.ec2.api import GONE_CODES, Ec2Api, Ec2ApiError
from pcc.drivers.ec2.settings import Ec2Settings
from pcc.drivers.ec2.types import InstanceType, choose_instance_type
from pcc.site import context

log = logging.getLogger(__name__)


class Ec2Driver(Driver):
    name = "ec2"
    features = frozenset()
    settings_type = Ec2Settings
    settings: Ec2Settings

    def __init__(self, settings: Ec2Settings, site: SiteContext) -> None:
        super().__init__(settings, site)
        self.api = Ec2Api(settings)
        self._sizes: dict[str, tuple[int, int]] = {}

    @property
    def ex_client(self) -> Any:
        """The boto3 EC2 client this driver speaks through (for tools and tests)."""
        return self.api.client()

    # -- what a cluster would be -------------------------------------------------------------
    def _prefix(self, spec: ClusterSpec) -> int:
        if self.settings.subnet_prefix is not None:
            return self.settings.subnet_prefix
        return min(28, max(16, ipaddress.ip_network(spec.network.private_cidr).prefixlen))

    def ex_instance_types(self, spec: ClusterSpec) -> dict[str, InstanceType]:
        """The instance type each node would be launched as, by node name."""
        types = self.settings.instance_types
        return {n.name: choose_instance_type(types, n.vcpus, n.memory_mib) for n in spec.nodes}

    def validate(self, spec: ClusterSpec) -> None:
        """Refuse ENT and site public addresses (the base class), a node no instance type
        fits, a role without an AMI, more nodes than the subnet holds, and user-data EC2
        would not take, before anything is held."""
        super().validate(spec)
        self.ex_instance_types(spec)
        plan.image_refs(spec, self.settings.images, self.settings.image_owners)
        prefix = self._prefix(spec)
        room = plan.usable_hosts(ipaddress.IPv4Network(f"0.0.0.0/{prefix}"))
        if len(spec.nodes) > room:
            raise UnsupportedError(
                f"cluster {spec.name}: {len(spec.nodes)} nodes do not fit a /{prefix} subnet "
                f"({room} addresses)"
            )
        for docs in spec.documents.values():
            plan.encode_user_data(docs.user_data)

    # -- create ----------------------------------------------------------------------------
    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        self.validate(spec)
        deadline = time.monotonic() + timeout
        try:
            self._create(spec, deadline, on_staged)
        except Exception:
            log.warning("cluster %s: creation failed; removing what was made on EC2", spec.name)
            with contextlib.suppress(Exception):
                self.clean(spec.name)
            raise
        return self.list_nodes(spec.name)

    def _create(self, spec: ClusterSpec, deadline: float, on_staged: Callable[[], None] | None) -> None:
        types = self.ex_instance_types(spec)
        amis = {
            role: self._resolve_ami(ref)
            for role, ref in plan.image_refs(spec, self.settings.images, self.settings.image_owners).items()
        }
        vpc = self._vpc()
        subnet_id, subnet = self._subnet(spec, vpc)
        group_id = self._security_group(spec.name, vpc["VpcId"])
        key_name = self._key_pair(spec)
        allocation_id, public_ip = self._address(spec.name)
        addresses = plan.address_map(spec, subnet)
        nodes = plan.ec2_nodes(spec, subnet, addresses, public_ip, plan.vpc_resolver(vpc["CidrBlock"]))
        docs = context.documents(nodes, spec.ssh_key, plan.vpc_resolver(vpc["CidrBlock"]))
        user_data = {name: plan.encode_user_data(d.user_data) for name, d in docs.items()}
        if on_staged is not None:
            on_staged()
        existing = {plan.tag_dict(i).get(plan.TAG_NODE) for i in self._instances(spec.name)}
        started: dict[str, float] = {}
        for node in sorted(nodes, key=lambda n: n.role is not Role.FRONTEND):
            if node.depends_on:
                self._wait_running(spec.name, [node.depends_on], deadline)
                pause = node.wait_seconds - (time.monotonic() - started.get(node.depends_on, 0.0))
                if pause > 0:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            if node.name not in existing:
                self._run(
                    spec,
                    node,
                    amis[node.role.value],
                    types[node.name],
                    subnet_id,
                    group_id,
                    key_name,
                    addresses[node.name],
                    user_data[node.name],
                )
            started[node.name] = time.monotonic()
            if node.role is Role.FRONTEND:
                self._wait_running(spec.name, [node.name], deadline)
                self._associate(spec.name, node.name, allocation_id)
        self._wait_running(spec.name, [n.name for n in nodes], deadline)

    def _resolve_ami(self, ref: plan.AmiRef) -> str:
        """An AMI named by id is used as given (EC2 checks it at launch); one named by name
        is looked up among its owners' images (the newest available of that name)."""
        if ref.is_id:
            return ref.ref
        images = self.api.call(
            f"find image {ref.ref!r}",
            "describe_images",
            Owners=list(ref.owners),
            Filters=[{"Name": "name", "Values": [ref.ref]}],
        ).get("Images", [])
        found = plan.newest_image(images)
        if found is None:
            raise DriverError(
                f"EC2: no available AMI named {ref.ref!r} owned by {', '.join(ref.owners)} "
                f"in region {self.settings.region}"
            )
        return str(found["ImageId"])

    def _vpc(self) -> dict[str, Any]:
        if self.settings.vpc_id:
            vpcs = self.api.call("find the VPC", "describe_vpcs", VpcIds=[self.settings.vpc_id]).get(
                "Vpcs", []
            )
        else:
            vpcs = self.api.call(
                "find the default VPC", "describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}]
            ).get("Vpcs", [])
        if not vpcs:
            raise DriverError(
                f"EC2: region {self.settings.region} has no default VPC; set [driver.ec2] vpc_id"
                if not self.settings.vpc_id
                else f"EC2: no VPC {self.settings.vpc_id} in region {self.settings.region}"
            )
        return vpcs[0]

    def _subnet(self, spec: ClusterSpec, vpc: Mapping[str, Any]) -> tuple[str, ipaddress.IPv4Network]:
        site, vpc_id = self.site.name, vpc["VpcId"]
        in_vpc = {"Name": "vpc-id", "Values": [vpc_id]}
        mine = self.api.all(
            "find the cluster's subnet",
            "describe_subnets",
            "Subnets",
            Filters=[*plan.cluster_filters(site, spec.name), in_vpc],
        )
        if mine:
            return mine[0]["SubnetId"], ipaddress.IPv4Network(mine[0]["CidrBlock"])
        pool = ipaddress.IPv4Network(self.settings.subnet_pool or vpc["CidrBlock"])
        taken = [
            ipaddress.IPv4Network(s["CidrBlock"])
            for s in self.api.all("list the VPC's subnets", "describe_subnets", "Subnets", Filters=[in_vpc])
        ]
        prefix = self._prefix(spec)
        for _ in range(8):
            block = plan.carve_subnet(pool, prefix, taken)
            if block is None:
                raise DriverError(
                    f"EC2: no free /{prefix} left in {pool} of VPC {vpc_id} for cluster {spec.name}"
                )
            args: dict[str, Any] = {
                "VpcId": vpc_id,
                "CidrBlock": str(block),
                "TagSpecifications": plan.tag_specs(
                    ["subnet"], plan.tags(site, spec.name, plan.resource_name(site, spec.name))
                ),
            }
            if self.settings.availability_zone:
                args["AvailabilityZone"] = self.settings.availability_zone
            try:
                made = self.api.call(f"create subnet {block}", "create_subnet", **args)["Subnet"]
            except Ec2ApiError as exc:
                if exc.code != "InvalidSubnet.Conflict":
                    raise
                taken.append(block)  # someone else took it meanwhile
                continue
            log.info("cluster %s: subnet %s (%s)", spec.name, made["SubnetId"], block)
            return made["SubnetId"], block
        raise DriverError(f"EC2: could not create a subnet for cluster {spec.name} in {pool}")

    def _security_group(self, cluster: str, vpc_id: str) -> str:
        site, name = self.site.name, plan.resource_name(self.site.name, cluster)
        found = self.api.all(
            "find the cluster's security group",
            "describe_security_groups",
            "SecurityGroups",
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}],
        )
        if found:
            group_id = str(found[0]["GroupId"])
        else:
            group_id = str(
                self.api.call(
                    f"create security group {name}",
                    "create_security_group",
                    GroupName=name,
                    Description=f"PCC cluster {cluster} of site {site}",
                    VpcId=vpc_id,
                    TagSpecifications=plan.tag_specs(["security-group"], plan.tags(site, cluster, name)),
                )["GroupId"]
            )
        rules = [
            {
                "IpProtocol": "-1",
                "UserIdGroupPairs": [{"GroupId": group_id, "Description": "within the cluster"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [
                    {"CidrIp": c, "Description": "SSH to the frontend"} for c in self.settings.ssh_cidrs
                ],
            },
        ]
        for rule in rules:
            try:
                self.api.call(
                    f"allow traffic in {name}",
                    "authorize_security_group_ingress",
                    GroupId=group_id,
                    IpPermissions=[rule],
                )
            except Ec2ApiError as exc:
                if exc.code != "InvalidPermission.Duplicate":
                    raise
        return group_id

    def _key_pair(self, spec: ClusterSpec) -> str:
        site, name = self.site.name, plan.resource_name(self.site.name, spec.name)
        self.api.gone_ok(f"replace key pair {name}", "delete_key_pair", KeyName=name)
        self.api.call(
            f"import key pair {name}",
            "import_key_pair",
            KeyName=name,
            PublicKeyMaterial=spec.ssh_key.encode(),
            TagSpecifications=plan.tag_specs(["key-pair"], plan.tags(site, spec.name, name)),
        )
        return name

    def _address(self, cluster: str) -> tuple[str, str]:
        site = self.site.name
        found = self.api.call(
            "find the frontend's address", "describe_addresses", Filters=plan.cluster_filters(site, cluster)
        ).get("Addresses", [])
        if not found:
            found = [
                self.api.call(
                    "allocate an address for the frontend",
                    "allocate_address",
                    Domain="vpc",
                    TagSpecifications=plan.tag_specs(
                        ["elastic-ip"], plan.tags(site, cluster, plan.resource_name(site, cluster))
                    ),
                )
            ]
        return str(found[0]["AllocationId"]), str(found[0]["PublicIp"])

    def _run(
        self,
        spec: ClusterSpec,
        node: NodeSpec,
        image_id: str,
        itype: InstanceType,
        subnet_id: str,
        group_id: str,
        key_name: str,
        private_ip: str,
        user_data: bytes,
    ) -> None:
        site = self.site.name
        node_tags = plan.tags(
            site,
            spec.name,
            f"pcc-{site}-{node.name}",
            **{plan.TAG_NODE: node.name, plan.TAG_ROLE: node.role.value},
        )
        log.info(
            "cluster %s: launching %s (%s, %s, %s)", spec.name, node.name, itype.name, image_id, private_ip
        )
        self.api.call(
            f"launch {node.name}",
            "run_instances",
            ImageId=image_id,
            InstanceType=itype.name,
            KeyName=key_name,
            MinCount=1,
            MaxCount=1,
            UserData=user_data,
            ClientToken=f"{spec.name}-{uuid.uuid4().hex}"[:64],
            NetworkInterfaces=[
                {
                    "DeviceIndex": 0,
                    "SubnetId": subnet_id,
                    "Groups": [group_id],
                    "PrivateIpAddress": private_ip,
                    "AssociatePublicIpAddress": False,
                    "DeleteOnTermination": True,
                }
            ],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=plan.tag_specs(["instance", "volume", "network-interface"], node_tags),
        )

    def _associate(self, cluster: str, node: str, allocation_id: str) -> None:
        """The frontend's Elastic IP onto it, once it runs."""
        instance = next(
            (i for i in self._instances(cluster) if plan.tag_dict(i).get(plan.TAG_NODE) == node), None
        )
        if instance is None:
            raise DriverError(f"EC2: {node} vanished before its address could be associated")
        self.api.call(
            f"associate the address with {node}",
            "associate_address",
            AllocationId=allocation_id,
            InstanceId=instance["InstanceId"],
            AllowReassociation=True,
        )
        # The frontend is its computes' gateway (vc-out.xml says so): let it forward for them.
        self.api.call(
            f"let {node} forward for its cluster",
            "modify_instance_attribute",
            InstanceId=instance["InstanceId"],
            SourceDestCheck={"Value": False},
        )

    def _wait_running(self, cluster: str, names: list[str], deadline: float) -> None:
        pending = set(names)
        delay = min(0.2, self.settings.poll_interval_s)
        while True:
            for inst in self._instances(cluster, include_gone=True):
                name = plan.tag_dict(inst).get(plan.TAG_NODE, "")
                native = inst.get("State", {}).get("Name", "")
                if name not in pending:
                    continue
                if native == "running":
                    pending.discard(name)
                elif plan.node_state(native) in (NodeState.STOPPED, NodeState.ERROR):
                    reason = (inst.get("StateReason") or {}).get("Message", "")
                    raise DriverError(
                        f"EC2: {name} is {native} while booting{': ' + reason if reason else ''}"
                    )
            if not pending:
                return
            if time.monotonic() > deadline:
                raise DriverError(
                    f"EC2: nodes {', '.join(sorted(pending))} not running within the boot timeout"
                )
            time.sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval_s)

    # -- list / shutdown / clean -------------------------------------------------------------
    def _instances(self, cluster: str | None, include_gone: bool = False) -> list[dict[str, Any]]:
        reservations = self.api.all(
            "list instances",
            "describe_instances",
            "Reservations",
            Filters=plan.cluster_filters(self.site.name, cluster),
        )
        out = [i for r in reservations for i in r.get("Instances", [])]
        if not include_gone:
            out = [i for i in out if i.get("State", {}).get("Name") != plan.GONE]
        return out

    def _type_sizes(self, names: set[str]) -> dict[str, tuple[int, int]]:
        """vCPUs and MiB of each instance type, as EC2 describes it (the site's table where
        the cloud does not describe it)."""
        missing = sorted(names - set(self._sizes))
        if missing:
            try:
                for item in self.api.all(
                    "describe instance types",
                    "describe_instance_types",
                    "InstanceTypes",
                    InstanceTypes=missing,
                ):
                    self._sizes[item["InstanceType"]] = (
                        int(item["VCpuInfo"]["DefaultVCpus"]),
                        int(item["MemoryInfo"]["SizeInMiB"]),
                    )
            except DriverError as exc:
                log.info("instance type sizes from the site's table: %s", exc)
            for t in self.settings.instance_types:
                if t.name in missing and t.name not in self._sizes:
                    self._sizes[t.name] = (t.vcpus, t.memory_mib)
        return {n: self._sizes.get(n, (0, 0)) for n in names}

    def list_nodes(self, cluster: str | None = None) -> list[NodeInfo]:
        instances = self._instances(cluster)
        sizes = self._type_sizes({str(i.get("InstanceType", "")) for i in instances})
        out = []
        for inst in instances:
            t = plan.tag_dict(inst)
            native = str(inst.get("State", {}).get("Name", ""))
            role = plan.ROLES.get(t.get(plan.TAG_ROLE, ""), Role.COMPUTE)
            vcpus, memory = sizes.get(str(inst.get("InstanceType", "")), (0, 0))
            public = inst.get("PublicIpAddress")
            out.append(
                NodeInfo(
                    cluster=t.get(plan.TAG_CLUSTER, ""),
                    name=t.get(plan.TAG_NODE, inst["InstanceId"]),
                    role=role,
                    state=plan.node_state(native),
                    vcpus=vcpus,
                    memory_mib=memory,
                    private_ip=inst.get("PrivateIpAddress"),
                    public_ip=public,
                    ssh_port=22 if public else None,
                    extra={
                        "instance_id": inst["InstanceId"],
                        "instance_type": inst.get("InstanceType"),
                        "image_id": inst.get("ImageId"),
                        "native_state": native,
                        "availability_zone": (inst.get("Placement") or {}).get("AvailabilityZone"),
                        "subnet_id": inst.get("SubnetId"),
                    },
                )
            )
        return sorted(out, key=lambda n: (n.cluster, n.role is not Role.FRONTEND, n.name))

    def shutdown(self, cluster: str) -> int:
        running = [i["InstanceId"] for i in self._instances(cluster) if i["State"]["Name"] == "running"]
        if not running:
            return 0
        try:
            self.api.call(f"stop the nodes of {cluster}", "stop_instances", InstanceIds=running)
        except Ec2ApiError as exc:
            if exc.code != "UnsupportedOperation":
                raise
            log.info("cluster %s: instances cannot stop (%s); terminating them", cluster, exc)
            self.api.call(f"terminate the nodes of {cluster}", "terminate_instances", InstanceIds=running)
        return len(running)

    def clean(self, cluster: str) -> CleanResult:
        """Terminate the cluster's instances and wait until they are gone, then delete its
        address, leftover volumes and interfaces, key pair, security group and subnet. Every
        step runs even when an earlier one failed; the first failure is raised at the end."""
        deadline = time.monotonic() + self.settings.clean_timeout_s
        site = self.site.name
        released: list[str] = []
        failures: list[DriverError] = []

        @contextlib.contextmanager
        def step() -> Iterator[None]:
            try:
                yield
            except DriverError as exc:
                log.warning("cluster %s: clean: %s", cluster, exc)
                failures.append(exc)

        ids: list[str] = []
        with step():
            ids = [i["InstanceId"] for i in self._instances(cluster)]
            if ids:
                self.api.call(f"terminate the nodes of {cluster}", "terminate_instances", InstanceIds=ids)
                self._wait_gone(cluster, deadline)
        with step():
            for addr in self.api.call(
                "find the cluster's addresses",
                "describe_addresses",
                Filters=plan.cluster_filters(site, cluster),
            ).get("Addresses", []):
                if addr.get("AssociationId"):
                    self.api.gone_ok(
                        "disassociate the address",
                        "disassociate_address",
                        AssociationId=addr["AssociationId"],
                    )
                if self.api.patiently(
                    f"release {addr['PublicIp']}",
                    "release_address",
                    deadline,
                    AllocationId=addr["AllocationId"],
                ):
                    released.append(f"address {addr['PublicIp']}")
        with step():
            for vol in self.api.all(
                "find the cluster's volumes",
                "describe_volumes",
                "Volumes",
                Filters=plan.cluster_filters(site, cluster),
            ):
                if self.api.patiently(
                    f"delete volume {vol['VolumeId']}", "delete_volume", deadline, VolumeId=vol["VolumeId"]
                ):
                    released.append(f"volume {vol['VolumeId']}")
        with step():
            for eni in self.api.all(
                "find the cluster's interfaces",
                "describe_network_interfaces",
                "NetworkInterfaces",
                Filters=plan.cluster_filters(site, cluster),
            ):
                if self.api.patiently(
                    f"delete interface {eni['NetworkInterfaceId']}",
                    "delete_network_interface",
                    deadline,
                    NetworkInterfaceId=eni["NetworkInterfaceId"],
                ):
                    released.append(f"interface {eni['NetworkInterfaceId']}")
        with step():
            names = {plan.resource_name(site, cluster)}
            names |= {
                k["KeyName"]
                for k in self.api.call(
                    "find the cluster's key pairs",
                    "describe_key_pairs",
                    Filters=plan.cluster_filters(site, cluster),
                ).get("KeyPairs", [])
            }
            for name in sorted(names):
                if self._key_exists(name) and self.api.gone_ok(
                    f"delete key pair {name}", "delete_key_pair", KeyName=name
                ):
                    released.append(f"key pair {name}")
        with step():
            for group in self.api.all(
                "find the cluster's security groups",
                "describe_security_groups",
                "SecurityGroups",
                Filters=plan.cluster_filters(site, cluster),
            ):
                if self.api.patiently(
                    f"delete security group {group['GroupId']}",
                    "delete_security_group",
                    deadline,
                    GroupId=group["GroupId"],
                ):
                    released.append(f"security group {group['GroupId']}")
        with step():
            for sub in self.api.all(
                "find the cluster's subnet",
                "describe_subnets",
                "Subnets",
                Filters=plan.cluster_filters(site, cluster),
            ):
                if self.api.patiently(
                    f"delete subnet {sub['SubnetId']}", "delete_subnet", deadline, SubnetId=sub["SubnetId"]
                ):
                    released.append(f"subnet {sub['SubnetId']} ({sub['CidrBlock']})")
        if failures:
            raise failures[0]
        return CleanResult(removed_nodes=len(ids), removed_files=False, released=tuple(released))

    def _key_exists(self, name: str) -> bool:
        try:
            return bool(self.api.call("find key pair", "describe_key_pairs", KeyNames=[name]).get("KeyPairs"))
        except Ec2ApiError as exc:
            if exc.code in GONE_CODES:
                return False
            raise

    def _wait_gone(self, cluster: str, deadline: float) -> None:
        delay = min(0.2, self.settings.poll_interval_s)
        while True:
            left = [i["InstanceId"] for i in self._instances(cluster)]
            if not left:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"EC2: instances {', '.join(left)} not terminated within the clean timeout")
            time.sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval_s)

    def ex_clusters(self) -> set[str]:
        """Names of every cluster of this site that holds anything on EC2 (instances, subnets,
        security groups, key pairs, addresses, volumes), found by tag: what an orphan scan
        compares with the live reservations."""
        site = self.site.name
        found = {plan.tag_dict(i).get(plan.TAG_CLUSTER, "") for i in self._instances(None)}
        filters = plan.cluster_filters(site, None)
        for what, method, key in (
            ("subnets", "describe_subnets", "Subnets"),
            ("security groups", "describe_security_groups", "SecurityGroups"),
            ("volumes", "describe_volumes", "Volumes"),
        ):
            found |= {
                plan.tag_dict(r).get(plan.TAG_CLUSTER, "")
                for r in self.api.all(what, method, key, Filters=filters)
            }
        for what, method, key in (
            ("addresses", "describe_addresses", "Addresses"),
            ("key pairs", "describe_key_pairs", "KeyPairs"),
        ):
            found |= {
                plan.tag_dict(r).get(plan.TAG_CLUSTER, "")
                for r in self.api.call(what, method, Filters=filters).get(key, [])
            }
        return found - {""}

    # -- check -----------------------------------------------------------------------------
    def check(self) -> DriverHealth:
        where = self.settings.endpoint_url or f"AWS region {self.settings.region}"
        try:
            vpc = self._vpc()
        except PccError as exc:
            return DriverHealth(False, str(exc), {"region": self.settings.region})
        return DriverHealth(
            True,
            f"EC2 at {where}, VPC {vpc['VpcId']} ({vpc['CidrBlock']})",
            {
                "region": self.settings.region,
                "endpoint_url": self.settings.endpoint_url,
                "vpc_id": vpc["VpcId"],
                "vpc_cidr": vpc["CidrBlock"],
            },
        )
