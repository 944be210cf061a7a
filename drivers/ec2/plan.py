"""The EC2 driver's pure parts: the state table, tags and the filters that find a cluster's
resources, which AMI each role boots, the cluster's subnet and its nodes' addresses in it,
and the user-data each node is launched with. Nothing here calls EC2."""

from __future__ import annotations

import dataclasses
import gzip
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from pcc.common.errors import DriverError, UnsupportedError
from pcc.drivers.base import ClusterSpec, Interface, NodeSpec, NodeState, Role
from pcc.drivers.ec2.settings import AMI_ID, OWNER, ami_reference

# EC2's instance states onto PCC's; read with .get(native, NodeState.UNKNOWN).
NATIVE_STATES: dict[str, NodeState] = {
    "pending": NodeState.PENDING,
    "running": NodeState.RUNNING,
    "stopping": NodeState.STOPPED,
    "stopped": NodeState.STOPPED,
    "shutting-down": NodeState.STOPPED,
    "terminated": NodeState.STOPPED,
}
GONE = "terminated"  # EC2 lists terminated instances for a while; they are not nodes any more

TAG_SITE, TAG_CLUSTER, TAG_NODE, TAG_ROLE = "pcc:site", "pcc:cluster", "pcc:node", "pcc:role"
NS = "urn:pcc:ec2:1"  # the repository entry's <ec2:image> element, inside a role's <domain>
USER_DATA_LIMIT = 16384  # bytes EC2 accepts before base64
RESERVED_HEAD = 4  # EC2 keeps a subnet's network address and the next three; and its broadcast
ROLES: dict[str, Role] = {r.value: r for r in Role}


def node_state(native: str) -> NodeState:
    return NATIVE_STATES.get(native, NodeState.UNKNOWN)


# -- tags and names ---------------------------------------------------------------------
def resource_name(site: str, cluster: str) -> str:
    """The name of the cluster's key pair and security group (unique per site and cluster)."""
    return f"pcc-{site}-{cluster}"


def tags(site: str, cluster: str, name: str, **extra: str) -> list[dict[str, str]]:
    values = {"Name": name, TAG_SITE: site, TAG_CLUSTER: cluster, **extra}
    return [{"Key": k, "Value": v} for k, v in values.items()]


def tag_specs(resource_types: Iterable[str], tag_list: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tag_list} for kind in resource_types]


def cluster_filters(site: str, cluster: str | None) -> list[dict[str, Any]]:
    """The filters of everything the driver made for a cluster of this site (or all of them)."""
    out: list[dict[str, Any]] = [{"Name": f"tag:{TAG_SITE}", "Values": [site]}]
    if cluster is not None:
        out.append({"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]})
    return out


def tag_dict(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


# -- images -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AmiRef:
    """An AMI by id, or by name among images of ``owners``."""

    ref: str
    owners: tuple[str, ...] = ()

    @property
    def is_id(self) -> bool:
        return bool(AMI_ID.match(self.ref))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def ami_in_template(template: Any, role: str, image: str) -> AmiRef | None:
    """The ``<ec2:image id='ami-...'/>`` or ``<ec2:image name='...' owner='...'/>`` element in
    a role's ``<domain>`` (anywhere, usually under ``<metadata>``), or None."""
    xml = getattr(template, "domain_xml", None)
    if not xml:
        return None
    try:
        root = etree.fromstring(xml.encode(), _parser())
    except etree.XMLSyntaxError:
        return None
    found = root.findall(f".//{{{NS}}}image")
    if not found:
        return None
    where = f"image {image}: <{role}><domain>: <ec2:image>"
    if len(found) > 1:
        raise DriverError(f"{where} appears {len(found)} times")
    el = found[0]
    ami_id, name, owner = el.get("id"), el.get("name"), el.get("owner")
    if (ami_id is None) == (name is None):
        raise DriverError(f"{where} needs exactly one of id= or name=")
    if ami_id is not None:
        if not AMI_ID.match(ami_id):
            raise DriverError(f"{where} id={ami_id!r} is not an AMI id")
        return AmiRef(ami_id)
    assert name is not None
    if ami_reference(name) is None:
        raise DriverError(f"{where} name={name!r} is not an AMI name")
    if owner is not None and not OWNER.match(owner):
        raise DriverError(f"{where} owner={owner!r} is not self, amazon, aws-marketplace or an account id")
    return AmiRef(name, (owner,) if owner else ())


def image_refs(
    spec: ClusterSpec, site_images: Mapping[str, str], owners: tuple[str, ...]
) -> dict[str, AmiRef]:
    """The AMI each role of the spec boots: the site's ``[driver.ec2.images]`` entry for the
    image if it has one, else the repository entry's ``<ec2:image>`` of that role.

    Raises
    ------
    UnsupportedError
        A role of the spec has no AMI at this site.
    """
    out: dict[str, AmiRef] = {}
    for role in sorted({n.role.value for n in spec.nodes}):
        if spec.image.name in site_images:
            ref = AmiRef(site_images[spec.image.name])
        else:
            found = ami_in_template(spec.image.templates.get(role), role, spec.image.name)
            if found is None:
                raise UnsupportedError(
                    f"image {spec.image.name} names no AMI for its {role} (an <ec2:image xmlns:ec2='{NS}'"
                    f" id='ami-...'/> in its vc-in.xml, or [driver.ec2.images] {spec.image.name} = 'ami-...')"
                    " and so is not supported at this site"
                )
            ref = found
        out[role] = ref if ref.is_id or ref.owners else AmiRef(ref.ref, owners)
    return out


def newest_image(images: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of several AMIs of one name, the most recently created (None: there is none)."""
    usable = [i for i in images if i.get("State", "available") == "available"]
    return max(usable, key=lambda i: (i.get("CreationDate") or "", i["ImageId"]), default=None)


# -- the cluster's subnet and addresses -------------------------------------------------
def carve_subnet(
    pool: ipaddress.IPv4Network, prefix: int, taken: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The first block of size /prefix in ``pool`` that overlaps no ``taken`` subnet."""
    if prefix < pool.prefixlen:
        return None
    used = sorted(taken, key=lambda n: int(n.network_address))
    for block in pool.subnets(new_prefix=prefix):
        if not any(block.overlaps(t) for t in used):
            return block
    return None


def usable_hosts(subnet: ipaddress.IPv4Network) -> int:
    return subnet.num_addresses - RESERVED_HEAD - 1


def address_map(spec: ClusterSpec, subnet: ipaddress.IPv4Network) -> dict[str, str]:
    """Each node's private address in ``subnet``, by node name: the offset the site planned in
    its private network where EC2 allows it, else the lowest offset free for it (EC2 keeps
    a subnet's first four addresses and its last)."""
    private = ipaddress.ip_network(spec.network.private_cidr)
    first, last = RESERVED_HEAD, subnet.num_addresses - 2
    wanted: dict[str, int | None] = {}
    for node in spec.nodes:
        ip = node.private_ip
        wanted[node.name] = int(ipaddress.ip_address(ip)) - int(private.network_address) if ip else None
    taken = {o for o in wanted.values() if o is not None and first <= o <= last}
    free = (o for o in range(first, last + 1) if o not in taken)
    out: dict[str, str] = {}
    for node in spec.nodes:
        offset = wanted[node.name]
        if offset is None or not first <= offset <= last:
            offset = next(free, None)
            if offset is None:
                raise UnsupportedError(
                    f"cluster {spec.name}: {len(spec.nodes)} nodes do not fit a /{subnet.prefixlen} subnet"
                )
        out[node.name] = str(subnet.network_address + offset)
    return out


def ec2_nodes(
    spec: ClusterSpec,
    subnet: ipaddress.IPv4Network,
    addresses: Mapping[str, str],
    public_ip: str | None,
    dns: tuple[str, ...],
) -> tuple[NodeSpec, ...]:
    """The spec's nodes with the interfaces EC2 gives them: each node one NIC in the
    cluster's subnet (the frontend's public address is EC2's 1:1 NAT of its private one); a
    compute's gateway stays its frontend, as the site planned. MACs are EC2's to choose at
    launch, so none is claimed."""
    router = str(subnet.network_address + 1)
    new_of = {n.private_ip: addresses[n.name] for n in spec.nodes if n.private_ip}
    out = []
    for node in spec.nodes:
        mine = addresses[node.name]
        ifaces: list[Interface] = []
        if node.role is Role.FRONTEND:
            ifaces.append(Interface("public", "", "eth0", public_ip, 32 if public_ip else None, None, dns))
            ifaces.append(Interface("private", "", "eth0", mine, subnet.prefixlen, router, dns))
        else:
            planned = next((i for i in node.interfaces if i.network == "private"), None)
            gateway = new_of.get(planned.gateway) if planned and planned.gateway else None
            ifaces.append(Interface("private", "", "eth0", mine, subnet.prefixlen, gateway or router, dns))
        out.append(dataclasses.replace(node, interfaces=tuple(ifaces)))
    return tuple(out)


def vpc_resolver(vpc_cidr: str) -> tuple[str, ...]:
    """The Amazon-provided DNS server of a VPC: its base address plus two."""
    return (str(ipaddress.ip_network(vpc_cidr).network_address + 2),)


# -- user data --------------------------------------------------------------------------
def encode_user_data(text: str) -> bytes:
    """The bytes a node is launched with: the cloud-config as is, gzip-compressed (which
    cloud-init reads) when larger than EC2's 16 KiB limit.

    Raises
    ------
    UnsupportedError
        Too large even compressed.
    """
    raw = text.encode()
    if len(raw) <= USER_DATA_LIMIT:
        return raw
    packed = gzip.compress(raw, mtime=0)
    if len(packed) > USER_DATA_LIMIT:
        raise UnsupportedError(
            f"the node's user-data is {len(raw)} bytes ({len(packed)} compressed); "
            f"EC2 takes {USER_DATA_LIMIT}"
        )
    return packed


def decode_user_data(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode()


def vc_out_of(user_data: str) -> str:
    """The vc-out.xml a node's cloud-config writes to /root/vc-out.xml (as
    :func:`pcc.site.context.user_data` lays it out), or "" when there is none."""
    lines = user_data.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "- path: /root/vc-out.xml":
            body = []
            started = False
            for rest in lines[i + 1 :]:
                if not started:
                    started = rest.strip() == "content: |"
                    continue
                if rest.startswith("      ") or not rest.strip():
                    body.append(rest[6:])
                else:
                    break
            return "\n".join(body).rstrip("\n") + "\n" if body else ""
    return ""
