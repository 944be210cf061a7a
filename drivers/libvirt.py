"""The libvirt driver: domains built with lxml from the image's own ``<domain>``, defined and
started through libvirt-python, and read back from libvirt (never from our bookkeeping).

Settings (``[driver.libvirt]`` in the site config):

* ``uri`` — libvirt connection, default ``qemu:///session`` (the site account's own
  daemon, started by libvirt on first use; no root needed);
* ``domain_type`` — ``kvm`` where the host has working KVM, ``qemu`` (software emulation)
  where not, or ``auto`` (``kvm`` when ``/dev/kvm`` is usable by this user);
* ``ready_marker`` — optional text the guest prints on its serial console when it is up;
  until then a running domain is reported as ``booting``.

Each domain carries a ``<metadata>`` element with its cluster, role and addresses, so
``list`` needs nothing but libvirt.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lxml import etree

from pcc.common.errors import ConfigError, DriverError
from pcc.drivers.base import ClusterPlan, Driver, DriverHealth, Nic, NodePlan, NodeState, NodeStatus, Role

log = logging.getLogger(__name__)

NS = "urn:pcc:libvirt-node:1"
PREFIX = "pcc-"

try:  # optional dependency: only sites using this driver need libvirt-python
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - reported by check()/connect()
    libvirt = None
    libvirt_qemu = None


def _native_states() -> dict[int, NodeState]:
    if libvirt is None:
        return {}
    return {
        libvirt.VIR_DOMAIN_NOSTATE: NodeState.PENDING,
        libvirt.VIR_DOMAIN_RUNNING: NodeState.RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED: NodeState.RUNNING,
        libvirt.VIR_DOMAIN_PAUSED: NodeState.BOOTING,
        libvirt.VIR_DOMAIN_SHUTDOWN: NodeState.STOPPED,
        libvirt.VIR_DOMAIN_SHUTOFF: NodeState.STOPPED,
        libvirt.VIR_DOMAIN_CRASHED: NodeState.ERROR,
        libvirt.VIR_DOMAIN_PMSUSPENDED: NodeState.STOPPED,
    }


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


def build_domain_xml(node: NodePlan, domain_type: str) -> str:
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


def _addresses(node: NodePlan) -> dict[str, str]:
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


class LibvirtDriver(Driver):
    name = "libvirt"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.uri = str(self.settings.get("uri", "qemu:///session"))
        kind = str(self.settings.get("domain_type", "auto"))
        if kind not in ("auto", "kvm", "qemu"):
            raise ConfigError(f"[driver.libvirt] domain_type: must be auto, kvm or qemu, got {kind!r}")
        self.domain_type = (
            kind if kind != "auto" else ("kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "qemu")
        )
        marker = self.settings.get("ready_marker")
        self.ready_marker = re.compile(str(marker)) if marker else None
        self._conn: Any = None

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> Any:
        if libvirt is None:
            raise DriverError("libvirt-python is not installed (pip install libvirt-python)")
        if self._conn is None:
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise DriverError(
                    f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}"
                ) from None
        return self._conn

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise DriverError(f"libvirt: {what}: {exc.get_error_message()}") from None

    def _domains(self, cluster: str | None) -> list[Any]:
        conn = self.connect()
        out = []
        for dom in self._call("list domains", conn.listAllDomains, 0):
            if not dom.name().startswith(PREFIX):
                continue
            meta = self._metadata(dom)
            if meta is None or (cluster is not None and meta.get("cluster") != cluster):
                continue
            out.append(dom)
        return out

    @staticmethod
    def _metadata(dom: Any) -> dict[str, str] | None:
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0)
        except libvirt.libvirtError:
            return None
        el = etree.fromstring(text.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
        return dict(el.attrib)

    # -- verbs -----------------------------------------------------------------------------
    def deploy(self, plan: ClusterPlan, timeout: float) -> Sequence[NodeStatus]:
        conn = self.connect()
        deadline = time.monotonic() + timeout
        order = sorted(plan.nodes, key=lambda n: n.role is not Role.FRONTEND)
        started: dict[str, float] = {}
        for node in order:
            if node.depends_on:
                self._wait_running(plan.name, [node.depends_on], deadline)
                pause = node.wait_seconds - (time.monotonic() - started.get(node.depends_on, 0.0))
                if pause > 0:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            xml = build_domain_xml(node, self.domain_type)
            log.info("cluster %s: defining and starting %s", plan.name, domain_name(node.name))
            dom = self._call(f"define {node.name}", conn.defineXML, xml)
            self._call(f"start {node.name}", dom.create)
            started[node.name] = time.monotonic()
            self._forward_ports(dom, node)
        self._wait_running(plan.name, [n.name for n in plan.nodes], deadline)
        return self.list_nodes(plan.name)

    def _forward_ports(self, dom: Any, node: NodePlan) -> None:
        for index, nic in enumerate(node.nics):
            port = nic.source.get("forward_port") if nic.attach == "user" else None
            if not port:
                continue
            command = f"hostfwd_add hostnet{index} tcp:{nic.source['forward_address']}:{port}-:22"
            reply = self._call(
                "forward the SSH port",
                libvirt_qemu.qemuMonitorCommand,
                dom,
                command,
                libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
            )
            if reply.strip():  # the monitor reports errors as text
                raise DriverError(
                    f"cannot forward {nic.source['forward_address']}:{port} to {node.name}: {reply.strip()}"
                )

    def _wait_running(self, cluster: str, nodes: list[str], deadline: float) -> None:
        pending = set(nodes)
        while True:
            states = {n.name: n for n in self.list_nodes(cluster)}
            for name in list(pending):
                status = states.get(name)
                if status is None:
                    continue
                if status.state is NodeState.RUNNING:
                    pending.discard(name)
                elif status.state in (NodeState.ERROR, NodeState.STOPPED):
                    raise DriverError(
                        f"node {name} is {status.state.value} while booting; see "
                        f"{status.extra.get('console_log', 'its console log')}"
                    )
            if not pending:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"nodes {', '.join(sorted(pending))} not running within the boot timeout")
            time.sleep(0.25)

    def list_nodes(self, cluster: str | None = None) -> Sequence[NodeStatus]:
        table = _native_states()
        out = []
        for dom in self._domains(cluster):
            meta = self._metadata(dom) or {}
            try:
                state_code, _reason = dom.state()
                info = dom.info()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined by a concurrent clean while we listed
                raise DriverError(f"libvirt: read {dom.name()}: {exc.get_error_message()}") from None
            state = table.get(state_code, NodeState.UNKNOWN)
            console = self._console_log(dom)
            if state is NodeState.RUNNING and self.ready_marker is not None and not self._ready(console):
                state = NodeState.BOOTING
            out.append(
                NodeStatus(
                    cluster=meta.get("cluster", ""),
                    name=meta.get("name", dom.name()[len(PREFIX) :]),
                    role=Role(meta.get("role", "compute")),
                    state=state,
                    vcpus=int(info[3]),
                    memory_mib=int(info[1]) // 1024,
                    private_ip=meta.get("private_ip"),
                    public_ip=meta.get("public_ip"),
                    ssh_port=int(meta["ssh_port"]) if meta.get("ssh_port") else None,
                    extra={"domain": dom.name(), "console_log": str(console) if console else None},
                )
            )
        return sorted(out, key=lambda n: (n.cluster, n.role is not Role.FRONTEND, n.name))

    @staticmethod
    def _console_log(dom: Any) -> Path | None:
        try:
            xml = etree.fromstring(
                dom.XMLDesc(0).encode(), etree.XMLParser(resolve_entities=False, no_network=True)
            )
        except libvirt.libvirtError:
            return None
        src = xml.find("devices/serial[@type='file']/source")
        return Path(src.get("path")) if src is not None else None

    def _ready(self, console: Path | None) -> bool:
        if console is None or self.ready_marker is None:
            return False
        try:
            with console.open("rb") as fh:
                return bool(self.ready_marker.search(fh.read(4 << 20).decode("utf-8", "replace")))
        except OSError:
            return False

    def shutdown(self, cluster: str) -> int:
        stopped = 0
        for dom in self._domains(cluster):
            if self._call("read state", dom.isActive):
                self._call(f"destroy {dom.name()}", dom.destroy)
                stopped += 1
        return stopped

    def clean(self, cluster: str) -> int:
        removed = 0
        for dom in self._domains(cluster):
            if self._call("read state", dom.isActive):
                self._call(f"destroy {dom.name()}", dom.destroy)
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            self._call(f"undefine {dom.name()}", dom.undefineFlags, flags)
            removed += 1
        return removed

    def check(self) -> DriverHealth:
        try:
            conn = self.connect()
            version = conn.getLibVersion()
        except (DriverError, Exception) as exc:
            return DriverHealth(False, str(exc))
        text = f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}"
        return DriverHealth(
            True,
            f"libvirt {text} at {self.uri}, domain type {self.domain_type}",
            {"uri": self.uri, "libvirt_version": text, "domain_type": self.domain_type},
        )

    def ex_volume_path(self, pool: str, volume: str) -> str:
        """The host path of a storage-pool volume (the ZFS-style ``type='volume'`` disks)."""
        conn = self.connect()
        p = self._call(f"find pool {pool}", conn.storagePoolLookupByName, pool)
        vol = self._call(f"find volume {pool}/{volume}", p.storageVolLookupByName, volume)
        return str(self._call(f"path of {pool}/{volume}", vol.path))
