"""Contextualization: what each node is told about itself and its cluster.

Pure functions from the plan to text — pragma_boot's ``vc-out.xml`` (frontend and compute
forms) and a cloud-init NoCloud seed (``meta-data``, ``user-data``, ``network-config``) —
and one thin step, :func:`write_seed`, that packs them into a ``cidata`` ISO.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
from pathlib import Path

from lxml import etree

from pcc.common.errors import DriverError
from pcc.drivers.base import ClusterPlan, Nic, NodePlan, Role


def _iface_attrs(nic: Nic) -> dict[str, str]:
    attrs = {"mac": nic.mac, "iface": nic.guest_name, "mtu": "1500"}
    if nic.ip and nic.prefix is not None:
        net = ipaddress.ip_interface(f"{nic.ip}/{nic.prefix}").network
        attrs.update(ip=nic.ip, netmask=str(net.netmask), subnet=str(net.network_address))
    return attrs


def _gateway(node: NodePlan) -> str:
    return next((n.gateway for n in node.nics if n.gateway), "")


def _tail(vc: etree._Element, dns: tuple[str, ...], key: str) -> None:
    network = etree.SubElement(vc, "network")
    etree.SubElement(network, "dns", ip=",".join(dns), search="local", domain="")
    etree.SubElement(vc, "key").text = key


def _xml(vc: etree._Element) -> str:
    return etree.tostring(vc, pretty_print=True, encoding="unicode")


def vc_out_frontend(plan: ClusterPlan, key: str, dns: tuple[str, ...], fqdn: str) -> str:
    """The frontend's vc-out.xml: its own interfaces, and every compute node."""
    fe = plan.frontend
    vc = etree.Element("vc")
    frontend = etree.SubElement(vc, "frontend", fqdn=fqdn, name=fe.name, gw=_gateway(fe))
    for nic in fe.nics:
        etree.SubElement(frontend, nic.network, **_iface_attrs(nic))
    computes = [n for n in plan.nodes if n.role is Role.COMPUTE]
    compute = etree.SubElement(vc, "compute", count=str(len(computes)))
    for node in computes:
        el = etree.SubElement(compute, "node", name=node.name, cpus=str(node.vcpus), gw=_gateway(node))
        for nic in node.nics:
            if nic.network == "private":
                el.set("ip", nic.ip or "")
                el.set("mac", nic.mac)
            etree.SubElement(el, nic.network, **_iface_attrs(nic))
    _tail(vc, dns, key)
    return _xml(vc)


def vc_out_compute(plan: ClusterPlan, node: NodePlan, key: str, dns: tuple[str, ...], fqdn: str) -> str:
    """A compute node's vc-out.xml: the frontend's name and its own interfaces."""
    vc = etree.Element("vc")
    etree.SubElement(vc, "frontend", fqdn=fqdn)
    compute = etree.SubElement(vc, "compute", name=node.name, gw=_gateway(node))
    for nic in node.nics:
        etree.SubElement(compute, nic.network, fqdn=node.name, **_iface_attrs(nic))
    _tail(vc, dns, key)
    return _xml(vc)


def meta_data(node: NodePlan) -> str:
    return f"instance-id: {node.cluster}-{node.name}\nlocal-hostname: {node.name}\n"


def user_data(node: NodePlan, key: str, vc_out: str, domain: str = "local") -> str:
    """#cloud-config: hostname, the user's key for root and the default user, and vc-out.xml
    written to /root/vc-out.xml (where pragma_boot's images look for it)."""
    content = "".join(f"      {line}\n" for line in vc_out.rstrip("\n").splitlines())
    return (
        "#cloud-config\n"
        f"hostname: {node.name}\n"
        f"fqdn: {node.name}.{domain}\n"
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


def network_config(node: NodePlan) -> str:
    """netplan v2, one ethernet per NIC matched by MAC."""
    out = ["version: 2", "ethernets:"]
    for i, nic in enumerate(node.nics):
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


def write_seed(directory: Path, files: dict[str, str], iso: Path) -> Path:
    """Pack the seed files into a NoCloud ISO labelled ``cidata``."""
    tool = shutil.which("genisoimage") or shutil.which("mkisofs")
    if tool is None:
        raise DriverError("genisoimage is not installed (Debian package genisoimage)")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        proc = subprocess.run(
            [tool, "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock", *sorted(files)],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise DriverError(f"cannot write the seed {iso}: {proc.stderr.strip()}")
    return iso
