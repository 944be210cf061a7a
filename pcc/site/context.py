"""Contextualization: what each node is told about itself and its cluster.

Pure functions from the planned nodes to text — pragma_boot's ``vc-out.xml`` (frontend and
compute forms) and cloud-init's ``meta-data``, ``user-data`` and ``network-config`` — that
every driver hands its guests its own way (the libvirt driver packs them into a NoCloud
seed ISO, ``pcc.drivers.libvirt.seed``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from lxml import etree

from pcc.drivers.base import Interface, NodeDocuments, NodeSpec, Role


def _iface_attrs(nic: Interface) -> dict[str, str]:
    attrs = {"mac": nic.mac, "iface": nic.guest_name, "mtu": "1500"}
    if nic.ip and nic.prefix is not None:
        net = ipaddress.ip_interface(f"{nic.ip}/{nic.prefix}").network
        attrs.update(ip=nic.ip, netmask=str(net.netmask), subnet=str(net.network_address))
    return attrs


def _gateway(node: NodeSpec) -> str:
    return next((n.gateway for n in node.interfaces if n.gateway), "")


def _tail(vc: etree._Element, dns: tuple[str, ...], key: str) -> None:
    network = etree.SubElement(vc, "network")
    etree.SubElement(network, "dns", ip=",".join(dns), search="local", domain="")
    etree.SubElement(vc, "key").text = key


def _xml(vc: etree._Element) -> str:
    return etree.tostring(vc, pretty_print=True, encoding="unicode")


def vc_out_frontend(nodes: Sequence[NodeSpec], key: str, dns: tuple[str, ...], fqdn: str) -> str:
    """The frontend's vc-out.xml: its own interfaces, and every compute node."""
    fe = next(n for n in nodes if n.role is Role.FRONTEND)
    vc = etree.Element("vc")
    frontend = etree.SubElement(vc, "frontend", fqdn=fqdn, name=fe.name, gw=_gateway(fe))
    for nic in fe.interfaces:
        etree.SubElement(frontend, nic.network, **_iface_attrs(nic))
    computes = [n for n in nodes if n.role is Role.COMPUTE]
    compute = etree.SubElement(vc, "compute", count=str(len(computes)))
    for node in computes:
        el = etree.SubElement(compute, "node", name=node.name, cpus=str(node.vcpus), gw=_gateway(node))
        for nic in node.interfaces:
            if nic.network == "private":
                el.set("ip", nic.ip or "")
                el.set("mac", nic.mac)
            etree.SubElement(el, nic.network, **_iface_attrs(nic))
    _tail(vc, dns, key)
    return _xml(vc)


def vc_out_compute(node: NodeSpec, key: str, dns: tuple[str, ...], fqdn: str) -> str:
    """A compute node's vc-out.xml: the frontend's name and its own interfaces."""
    vc = etree.Element("vc")
    etree.SubElement(vc, "frontend", fqdn=fqdn)
    compute = etree.SubElement(vc, "compute", name=node.name, gw=_gateway(node))
    for nic in node.interfaces:
        etree.SubElement(compute, nic.network, fqdn=node.name, **_iface_attrs(nic))
    _tail(vc, dns, key)
    return _xml(vc)


def meta_data(node: NodeSpec) -> str:
    return f"instance-id: {node.cluster}-{node.name}\nlocal-hostname: {node.hostname}\n"


def user_data(node: NodeSpec, key: str, vc_out: str, domain: str = "local") -> str:
    """#cloud-config: hostname, the user's key for root and the default user, and vc-out.xml
    written to /root/vc-out.xml (where pragma_boot's images look for it)."""
    content = "".join(f"      {line}\n" for line in vc_out.rstrip("\n").splitlines())
    return (
        "#cloud-config\n"
        f"hostname: {node.hostname}\n"
        f"fqdn: {node.hostname}.{domain}\n"
        "manage_etc_hosts: true\n"
        "disable_root: false\n"
        "ssh_pwauth: false\n"
        "ssh_authorized_keys:\n"
        f"  - {key}\n"
        "write_files:\n"
        "  - path: /root/vc-out.xml\n"
        "    permissions: '0600'\n"
        "    content: |\n"
        f"{content}"
    )


def network_config(node: NodeSpec) -> str:
    """netplan v2, one ethernet per NIC matched by MAC."""
    out = ["version: 2", "ethernets:"]
    for i, nic in enumerate(node.interfaces):
        out += [
            f"  {nic.network}{i}:",
            "    match:",
            f'      macaddress: "{nic.mac}"',
            f"    set-name: {nic.guest_name}",
        ]
        if nic.ip and nic.prefix is not None:
            out += ["    addresses:", f"      - {nic.ip}/{nic.prefix}"]
            if nic.gateway:
                out += ["    routes:", "      - to: default", f"        via: {nic.gateway}"]
        else:
            out += ["    dhcp4: true"]
        if nic.dns:
            out += ["    nameservers:", "      addresses:", *(f"        - {d}" for d in nic.dns)]
    return "\n".join(out) + "\n"


def documents(
    nodes: Sequence[NodeSpec], key: str, dns: tuple[str, ...], domain: str = "local"
) -> dict[str, NodeDocuments]:
    """Every node's documents, by node name."""
    fe = next(n for n in nodes if n.role is Role.FRONTEND)
    fqdn = f"{fe.hostname}.{domain}"
    out: dict[str, NodeDocuments] = {}
    for node in nodes:
        if node.role is Role.FRONTEND:
            vc_out = vc_out_frontend(nodes, key, dns, fqdn)
        else:
            vc_out = vc_out_compute(node, key, dns, fqdn)
        out[node.name] = NodeDocuments(
            vc_out=vc_out,
            user_data=user_data(node, key, vc_out, domain),
            meta_data=meta_data(node),
            network_config=network_config(node),
        )
    return out
