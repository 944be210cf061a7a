"""What the driver writes into OpenNebula, as template text: each node's VM (or what it
merges into a VM template on instantiation), its CONTEXT section, and the cluster's private
network (a virtual network of its own, or a reservation from a configured one).

Every value goes through :func:`~pcc.drivers.opennebula.syntax.quote`; the free texts
(cloud-init user-data, vc-out.xml) go base64-encoded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pcc.common.errors import DriverError
from pcc.drivers.base import ClusterSpec, NodeDocuments, NodeSpec
from pcc.drivers.opennebula.syntax import Template, b64

LABEL_PREFIX = "PCC/"


def vm_name(node: str) -> str:
    return f"pcc-{node}"


def vnet_name(cluster: str) -> str:
    return f"pcc-{cluster}-private"


def clone_name(cluster: str, role: str) -> str:
    return f"pcc-{cluster}-{role}-disk"


def label(cluster: str) -> str:
    """The Sunstone label every VM of the cluster carries (``LABELS`` is in the short form
    of ``one.vmpool.info``, so a cluster's VMs are found without reading each one)."""
    return f"{LABEL_PREFIX}{cluster}"


@dataclass(frozen=True)
class Networks:
    """The OpenNebula virtual networks a cluster's NICs attach to, by ID."""

    public: int
    private: int | None = None
    ent: Mapping[str, int] = field(default_factory=dict)


def nics(node: NodeSpec, spec: ClusterSpec, nets: Networks) -> list[dict[str, str | int]]:
    """One NIC per planned interface, in the guest's order (eth0, eth1, ...). Private NICs
    ask for their planned address; the frontend's public NIC for the site's public address
    when it has one (bridge mode), else whatever the public network leases."""
    out: list[dict[str, str | int]] = []
    for iface in node.interfaces:
        if iface.network == "public":
            nic: dict[str, str | int] = {"NETWORK_ID": nets.public}
            if spec.network.public_address:
                nic["IP"] = spec.network.public_address
        elif iface.network == "private":
            if nets.private is None or not iface.ip:
                raise DriverError(f"{node.name}: a private interface without a private network or address")
            nic = {"NETWORK_ID": nets.private, "IP": iface.ip}
        elif iface.network in nets.ent:
            nic = {"NETWORK_ID": nets.ent[iface.network]}
        else:
            raise DriverError(f"{node.name}: no OpenNebula network for interface {iface.network}")
        out.append(nic)
    return out


def context(
    node: NodeSpec,
    docs: NodeDocuments,
    key: str,
    base: Mapping[str, str] | None = None,
    files: str | None = None,
) -> dict[str, str]:
    """The node's CONTEXT: a template's own (``base``) with PCC's on top — the user's key,
    OpenNebula's network configuration, the hostname, the cloud-init user-data (which
    writes /root/vc-out.xml), vc-out.xml itself base64-encoded, and ``files`` (a path for
    OpenNebula to put on the context CD as a file, see ``files_dir``)."""
    ctx = {k: v for k, v in (base or {}).items() if isinstance(v, str)}
    ctx.update(
        NETWORK="YES",
        SSH_PUBLIC_KEY=key,
        SET_HOSTNAME=node.hostname,
        USER_DATA=b64(docs.user_data),
        USERDATA_ENCODING="base64",
        PCC_VC_OUT=b64(docs.vc_out),
        PCC_VC_OUT_ENCODING="base64",
        PCC_CLUSTER=node.cluster,
        PCC_NODE=node.name,
        PCC_ROLE=node.role.value,
    )
    if files:
        ctx["FILES"] = files
    return ctx


def vm_attributes(
    node: NodeSpec,
    nic_list: list[dict[str, str | int]],
    ctx: Mapping[str, str],
    disk: Mapping[str, str | int] | None = None,
) -> Template:
    """The node's VM: size, disk (when booting an image), NICs, CONTEXT and PCC's labels.
    Instantiating a template, this is the extra template merged over it (OpenNebula
    replaces the template's attributes of the same names)."""
    t = Template().set("CPU", node.vcpus).set("VCPU", node.vcpus).set("MEMORY", node.memory_mib)
    if disk is not None:
        t.vector("DISK", disk)
    for nic in nic_list:
        t.vector("NIC", nic)
    t.vector("CONTEXT", ctx)
    t.set("LABELS", label(node.cluster))
    t.set("PCC_CLUSTER", node.cluster).set("PCC_NODE", node.name).set("PCC_ROLE", node.role.value)
    return t


def vm_template(
    node: NodeSpec,
    nic_list: list[dict[str, str | int]],
    ctx: Mapping[str, str],
    disk: Mapping[str, str | int],
) -> Template:
    """A whole VM for ``one.vm.allocate``."""
    return Template().set("NAME", vm_name(node.name)).extend(vm_attributes(node, nic_list, ctx, disk).items)


def private_vnet(spec: ClusterSpec, attributes: Mapping[str, str]) -> Template:
    """The cluster's own private network: the site's attributes (VN_MAD, PHYDEV, ...) and one
    single-address range per node holding its planned IP and MAC, so that what vc-out.xml
    says is what each NIC gets. Compute nodes' ranges carry their gateway and DNS."""
    net = ipaddress.ip_network(spec.network.private_cidr)
    t = Template().set("NAME", vnet_name(spec.name))
    for key, value in attributes.items():
        t.set(key, value)
    t.set("NETWORK_ADDRESS", str(net.network_address)).set("NETWORK_MASK", str(net.netmask))
    t.set("PCC_CLUSTER", spec.name)
    for node in spec.nodes:
        for iface in node.interfaces:
            if iface.network != "private" or not iface.ip:
                continue
            ar: dict[str, str | int] = {"TYPE": "IP4", "IP": iface.ip, "MAC": iface.mac, "SIZE": 1}
            if iface.gateway:
                ar["GATEWAY"] = iface.gateway
            if iface.dns:
                ar["DNS"] = " ".join(iface.dns)
            t.vector("AR", ar)
    return t


def private_addresses(spec: ClusterSpec) -> list[str]:
    return [i.ip for n in spec.nodes for i in n.interfaces if i.network == "private" and i.ip]


def reservation(name: str | None, ip: str, ar_id: str, into: int | None) -> Template:
    """One planned address reserved from the configured network: the first makes the
    reservation (``name``), the others add to it (``into``)."""
    t = Template().set("SIZE", 1).set("AR_ID", ar_id).set("IP", ip)
    if into is None:
        assert name is not None
        t.set("NAME", name)
    else:
        t.set("NETWORK_ID", into)
    return t
