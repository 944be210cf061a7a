"""The libvirt driver's own plan of a node (disks, seed, NICs as libvirt attaches them) and
the domain XML built from it with lxml: the image's ``<domain>`` with its devices kept, its
disks and NICs replaced by the plan's, a seed disk, a serial console to a file, and a
``<metadata>`` element that lets ``list`` read everything back from libvirt alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from pcc.common.errors import DriverError
from pcc.common.protocol import Role

NS = "urn:pcc:libvirt-node:1"
PREFIX = "pcc-"


@dataclass(frozen=True)
class StagedDisk:
    """A node's disk: a copy-on-write overlay on a repository image (or a volume)."""

    path: Path
    format: str  # "qcow2" for overlays
    target: str  # guest device name, e.g. "vda"
    bus: str = "virtio"
    readonly: bool = False
    device: str = "disk"


@dataclass(frozen=True)
class Nic:
    """One interface as libvirt attaches it. ``network`` is "public", "private" or an ENT
    name; ``attach`` is "user" (NAT with a host port forward), "bridge" or "udp"."""

    network: str
    mac: str
    ip: str | None = None
    prefix: int | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    guest_name: str = "eth0"
    attach: str = "user"
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainPlan:
    """Everything needed to define one node's domain."""

    cluster: str
    name: str
    role: Role
    vcpus: int
    memory_mib: int
    disks: tuple[StagedDisk, ...]
    seed: Path
    nics: tuple[Nic, ...]
    domain_xml: str  # the image's own <domain> description, as given
    console_log: Path
    image_dir: Path  # where the image's relative paths (kernel, initrd) resolve
    depends_on: str | None = None
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class ClusterLayout:
    """A cluster as the libvirt driver stages it: its domains and where SSH reaches it."""

    name: str
    directory: Path
    nodes: tuple[DomainPlan, ...]
    public_address: str | None = None
    ssh_port: int = 22
    links: tuple[int, ...] = ()  # user mode: the hub's UDP port, then one per node

    @property
    def frontend(self) -> DomainPlan:
        return next(n for n in self.nodes if n.role is Role.FRONTEND)


def domain_name(node: str) -> str:
    return f"{PREFIX}{node}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(
        parent, tag, {k.replace("_", "-") if k != "type_" else "type": v for k, v in attrs.items()}
    )
    if text is not None:
        el.text = text
    return el


def _interface(devices: etree._Element, nic: Nic) -> None:
    if nic.attach == "user":
        iface = _sub(devices, "interface", type_="user")
        _sub(iface, "mac", address=nic.mac)
        if nic.source.get("net"):
            net, _, prefix = str(nic.source["net"]).partition("/")
            _sub(iface, "ip", family="ipv4", address=net, prefix=prefix)
    elif nic.attach == "udp":  # a point-to-point UDP link to the cluster's loopback hub
        iface = _sub(devices, "interface", type_="udp")
        _sub(iface, "mac", address=nic.mac)
        src = _sub(iface, "source", address=str(nic.source["address"]), port=str(nic.source["port"]))
        _sub(src, "local", address=str(nic.source["address"]), port=str(nic.source["local_port"]))
    elif nic.attach == "bridge":
        iface = _sub(devices, "interface", type_="bridge")
        _sub(iface, "mac", address=nic.mac)
        _sub(iface, "source", bridge=str(nic.source["bridge"]))
    else:
        raise DriverError(f"libvirt driver: NIC attachment {nic.attach!r} is not supported")
    _sub(iface, "model", type_="virtio")


def build_domain_xml(node: DomainPlan, domain_type: str) -> str:
    """The node's libvirt domain: the image's ``<domain>`` with its devices kept, its disks and
    NICs replaced by the plan's, a seed disk, a serial console to a file, and our metadata."""
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, remove_blank_text=True)
    dom = etree.fromstring(node.domain_xml.encode(), parser)
    dom.set("type", domain_type)
    for tag in ("name", "uuid", "memory", "currentMemory", "vcpu", "metadata"):
        for el in dom.findall(tag):
            dom.remove(el)
    dom.insert(0, etree.Element("name"))
    dom[0].text = domain_name(node.name)
    meta = etree.Element("metadata")
    etree.SubElement(
        meta,
        f"{{{NS}}}node",
        nsmap={"pcc": NS},
        cluster=node.cluster,
        name=node.name,
        role=node.role.value,
        **_addresses(node),
    )
    dom.insert(1, meta)
    mem = etree.Element("memory", unit="MiB")
    mem.text = str(node.memory_mib)
    dom.insert(2, mem)
    vcpu = etree.Element("vcpu", placement="static")
    vcpu.text = str(node.vcpus)
    dom.insert(3, vcpu)
    os_el = dom.find("os")
    if os_el is None:
        raise DriverError(f"image domain for {node.name} has no <os>")
    for tag in ("kernel", "initrd", "dtb"):
        el = os_el.find(tag)
        if el is not None and el.text and not os.path.isabs(el.text.strip()):
            el.text = str((node.image_dir / el.text.strip()).resolve())
    os_type = os_el.find("type")
    if os_type is not None and os_type.get("machine") is None:
        os_type.set("machine", "pc")
    devices = dom.find("devices")
    if devices is None:
        devices = etree.SubElement(dom, "devices")
    for el in list(devices):
        if el.tag in ("disk", "interface", "serial", "console", "emulator", "graphics", "video") or (
            el.tag == "disk" and el.get("device") in ("cdrom", "floppy")
        ):
            devices.remove(el)
    for disk in node.disks:
        d = _sub(devices, "disk", type_="file", device="disk")
        _sub(d, "driver", name="qemu", type_=disk.format)
        _sub(d, "source", file=str(disk.path))
        _sub(d, "target", dev=disk.target, bus=disk.bus)
    used = {disk.target for disk in node.disks}
    seed_dev = next(f"vd{c}" for c in "bcdefghijklmnop" if f"vd{c}" not in used)
    seed = _sub(devices, "disk", type_="file", device="disk")
    _sub(seed, "driver", name="qemu", type_="raw")
    _sub(seed, "source", file=str(node.seed))
    _sub(seed, "target", dev=seed_dev, bus="virtio")
    _sub(seed, "readonly")
    for nic in node.nics:
        _interface(devices, nic)
    serial = _sub(devices, "serial", type_="file")
    _sub(serial, "source", path=str(node.console_log))
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type_="file")
    _sub(console, "source", path=str(node.console_log))
    _sub(console, "target", type_="serial", port="0")
    if devices.find("rng") is None:  # without entropy, guests wait seconds for their first keys
        rng = _sub(devices, "rng", model="virtio")
        _sub(rng, "backend", "/dev/urandom", model="random")
    return etree.tostring(dom, pretty_print=True, encoding="unicode")


def _addresses(node: DomainPlan) -> dict[str, str]:
    out: dict[str, str] = {}
    for nic in node.nics:
        if nic.network == "private" and nic.ip:
            out["private_ip"] = nic.ip
        if nic.network == "public":
            if nic.attach == "user" and nic.source.get("forward_port"):
                out["public_ip"] = str(nic.source["forward_address"])
                out["ssh_port"] = str(nic.source["forward_port"])
            elif nic.ip:
                out["public_ip"] = nic.ip
                out["ssh_port"] = "22"
    return out
