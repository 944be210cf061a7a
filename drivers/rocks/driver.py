"""The Rocks driver: a PCC cluster is a Rocks 6.2 virtual cluster (KVM roll) made, started,
listed and removed with the ``rocks`` command, as pragma_boot's kvm_rocks driver did.

* **Boot.** ``rocks add cluster`` makes the frontend VM (``<prefix><cluster>``, its public
  interface on the site's public address, from ``[network.public]``) and the compute VMs
  (``vm-<prefix><cluster>-<i>``) with their private interfaces on a free VLAN from the
  ``vlans`` setting. Each VM is then given the site's plan: CPUs, memory, the planned MACs
  (and private addresses) on its interfaces, its disk, its seed as its CD-ROM, and boot
  action ``os``; then ``rocks start host vm``, computes after the frontend is running.
* **Image.** A repository entry is the ordinary ``vc-in.xml`` (either format): for each role
  its ``<domain>``'s file disks (raw or qcow2) are the base images. Each node's disk is a qcow2
  overlay on them in ``disk_dir/<cluster>/`` handed to Rocks as ``disk=qcow2:PATH,vda,virtio``.
  Rocks writes the VM's libvirt XML itself, so the rest of the ``<domain>`` is not used and an
  image must boot from its disk (a ``<kernel>`` direct boot is refused). ZFS volumes are not
  supported (pragma_boot's img-storage path).
* **Contextualization.** pragma_boot copied vc-out.xml into the frontend's image with
  guestmount; this driver writes every node's documents (cloud-init ``user-data``,
  ``meta-data``, ``network-config`` and ``vc-out.xml``) into a NoCloud seed ISO and attaches
  it with ``rocks set host vm cdrom`` — the frontend gets the user's key through it.
* **List** reads ``rocks list cluster status=true``, ``rocks list host vm status=true`` and
  ``rocks list host interface`` (parsed by :mod:`.parse`); nothing is read from our files.
* **Clean** runs ``rocks remove cluster`` (VMs, their interfaces and addresses, and the VLAN
  interfaces on the VM containers), removes a VLAN interface a half-made ``add cluster``
  left, and deletes ``disk_dir/<cluster>/``.

ENT (extra interfaces on other networks) is not supported: the base class refuses it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lxml import etree

from pcc.common.errors import CapacityError, ConfigError, DriverError, UnsupportedError
from pcc.drivers.base import (
    FEATURE_PUBLIC_ADDRESS,
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
from pcc.drivers.rocks import naming, staging
from pcc.drivers.rocks.commands import DiskSpec, RocksCommands, RocksRunner
from pcc.drivers.rocks.parse import (
    ClusterEntry,
    InterfaceEntry,
    RocksParseError,
    VmEntry,
    parse_add_cluster,
    parse_list_cluster,
    parse_list_host,
    parse_list_host_interface,
    parse_list_host_vm,
    parse_version,
)
from pcc.drivers.rocks.settings import SAFE_PATH, RocksSettings

log = logging.getLogger(__name__)

# What `rocks list host vm status=true` says (rocks.db.vmextend.getStatus: libvirt's state of
# the domain on the VM's container; a VM defined in Rocks but with no domain is "nostate").
NATIVE_STATES: dict[str, NodeState] = {
    "active": NodeState.RUNNING,  # libvirt running or blocked
    "paused": NodeState.BOOTING,  # holds its container's CPUs and memory, not running (as libvirt's)
    "shutdown": NodeState.STOPPED,  # shutting down
    "shutoff": NodeState.STOPPED,
    "nostate": NodeState.STOPPED,  # in Rocks' database, not started (or stopped: stop undefines it)
    "crashed": NodeState.ERROR,
    "nostate-error": NodeState.UNKNOWN,  # the container's libvirt cannot be asked
}
STOPPABLE = frozenset({"active", "paused", "shutdown"})
PRIVATE_SUBNET, PUBLIC_SUBNET = "private", "public"


def node_state(native: str | None) -> NodeState:
    return NATIVE_STATES.get(native or "", NodeState.UNKNOWN)


# -- the plan (pure) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NodePlan:
    host: str  # the Rocks host name
    spec: NodeSpec
    disks: tuple[DiskSpec, ...]
    bases: tuple[tuple[Path, str], ...]  # per disk: the repository image and its format
    seed: Path
    # (Rocks interface, MAC, address to record or None): on a frontend Rocks' eth0 is the
    # private VLAN and eth1 the public network; a compute has eth0 only.
    interfaces: tuple[tuple[str, str, str | None], ...]


@dataclass(frozen=True)
class ClusterPlan:
    cluster: str
    frontend: str
    directory: Path
    public_ip: str
    gateway: str | None
    nodes: tuple[NodePlan, ...]  # the frontend, then the computes in order

    @property
    def computes(self) -> tuple[NodePlan, ...]:
        return self.nodes[1:]


def _template(spec: ClusterSpec, role: str) -> Any:
    tpl = spec.image.templates.get(role)
    if tpl is None or not hasattr(tpl, "disks") or not hasattr(tpl, "domain_xml"):
        raise UnsupportedError(
            f"image {spec.image.name}: its {role} nodes have no <domain> with disks, which is "
            "not supported at this site (driver rocks)"
        )
    return tpl


def check_image(spec: ClusterSpec) -> None:
    """Refuse, before anything is made, an image Rocks cannot boot as this driver runs it."""
    for role in sorted({n.role.value for n in spec.nodes}):
        tpl = _template(spec, role)
        for disk in tpl.disks:
            if disk.kind != "file" or disk.path is None:
                raise UnsupportedError(
                    f"image {spec.image.name}: {role} disk {disk.describe()} (storage volumes) "
                    "is not supported at this site (driver rocks: file disks only)"
                )
        domain = etree.fromstring(
            tpl.domain_xml.encode(), etree.XMLParser(resolve_entities=False, no_network=True)
        )
        if domain.find("os/kernel") is not None:
            raise UnsupportedError(
                f"image {spec.image.name}: its {role} boots a kernel named in <os><kernel>, which is "
                "not supported at this site (driver rocks: Rocks VMs boot from their disk)"
            )


def check_public(spec: ClusterSpec) -> str:
    if spec.network.public_address is None:
        raise UnsupportedError(
            "frontends without a public address of their own are not supported at this site "
            "(driver rocks: use the site's bridge network mode with [network.public])"
        )
    return spec.network.public_address


def plan_cluster(spec: ClusterSpec, prefix: str, disk_dir: Path, gateway: str | None) -> ClusterPlan:
    """Rocks names, disks, seeds and interfaces for ``spec`` (nothing is read or written)."""
    public_ip = check_public(spec)
    frontend = naming.frontend_host(prefix, spec.name)
    directory = disk_dir / spec.name
    nodes = []
    for index, node in enumerate((spec.frontend, *spec.computes)):
        host = frontend if index == 0 else naming.compute_host(frontend, index - 1)
        tpl = _template(spec, node.role.value)
        disks = tuple(
            DiskSpec(path=directory / f"{host}-{d.target}.qcow2", device=d.target, bus=d.bus)
            for d in tpl.disks
        )
        bases = tuple((d.path, d.format) for d in tpl.disks)
        private = next((i for i in node.interfaces if i.network == "private"), None)
        public = next((i for i in node.interfaces if i.network == "public"), None)
        ifaces: list[tuple[str, str, str | None]] = []
        if private is not None:
            ifaces.append(("eth0", private.mac, private.ip))
        if node.role is Role.FRONTEND and public is not None:
            ifaces.append(("eth1", public.mac, None))  # its address is add cluster's ip=
        nodes.append(NodePlan(host, node, disks, bases, directory / f"{host}-seed.iso", tuple(ifaces)))
    return ClusterPlan(spec.name, frontend, directory, public_ip, gateway, tuple(nodes))


def add_cluster_command(
    plan: ClusterPlan, rocks: RocksCommands, vlan: int, settings: RocksSettings
) -> list[str]:
    first = plan.computes[0].spec if plan.computes else plan.nodes[0].spec
    return rocks.add_cluster(
        ip=plan.public_ip,
        computes=len(plan.computes),
        frontend=plan.frontend,
        vlan=vlan,
        cpus_per_compute=first.vcpus,
        mem_per_compute=first.memory_mib,
        gateway=plan.gateway,
        container_hosts=settings.container_hosts,
        fe_container=settings.fe_container,
    )


def configure_commands(plan: ClusterPlan, rocks: RocksCommands) -> list[list[str]]:
    """What makes each VM ``rocks add cluster`` defined the node the site planned."""
    out: list[list[str]] = []
    for node in plan.nodes:
        out.append(rocks.set_host_cpus(node.host, node.spec.vcpus))
        out.append(rocks.set_host_vm_mem(node.host, node.spec.memory_mib))
        out.append(rocks.set_host_vm_disks(node.host, node.disks))
        out.append(rocks.set_host_vm_cdrom(node.host, node.seed))
        for iface, mac, ip in node.interfaces:
            out.append(rocks.set_host_interface_mac(node.host, iface, mac))
            if ip is not None:
                out.append(rocks.set_host_interface_ip(node.host, iface, ip))
        out.append(rocks.set_host_boot(node.host, "os"))
    out.append(rocks.sync_config())
    return out


def free_vlan(allowed: Iterable[int], interfaces: Iterable[InterfaceEntry]) -> int | None:
    used = {i.vlan for i in interfaces if i.vlan}
    return next((v for v in allowed if v not in used), None)


def nodes_from(
    prefix: str,
    clusters: Sequence[ClusterEntry],
    vms: dict[str, VmEntry],
    interfaces: Sequence[InterfaceEntry],
) -> list[NodeInfo]:
    """PCC's nodes as Rocks lists them (``clusters``: PCC's own entries only)."""
    by_host: dict[str | None, list[InterfaceEntry]] = {}
    for iface in interfaces:
        by_host.setdefault(iface.host, []).append(iface)
    out = []
    for entry in clusters:
        cluster = naming.cluster_of(prefix, entry.frontend)
        if cluster is None:
            continue
        for host in entry.hosts:
            vm = vms.get(host)
            if vm is None:
                continue  # removed while we were listing
            name, role = naming.node_of(cluster, entry.frontend, host)
            ifaces = by_host.get(host, [])
            private = next((i.ip for i in ifaces if i.subnet == PRIVATE_SUBNET and i.ip), None)
            public = next((i.ip for i in ifaces if i.subnet == PUBLIC_SUBNET and i.ip), None)
            out.append(
                NodeInfo(
                    cluster=cluster,
                    name=name,
                    role=role,
                    state=node_state(vm.status),
                    vcpus=vm.cpus,
                    memory_mib=vm.mem_mib,
                    private_ip=private,
                    public_ip=public,
                    ssh_port=22 if role is Role.FRONTEND and public else None,
                    extra={
                        "rocks_host": host,
                        "rocks_status": vm.status,
                        "container": vm.physhost,
                        "vlan": next((i.vlan for i in ifaces if i.subnet == PRIVATE_SUBNET), None),
                    },
                )
            )

    def order(n: NodeInfo) -> tuple[str, bool, int, str]:
        tail = n.name.rsplit("-", 1)[-1]
        return (n.cluster, n.role is not Role.FRONTEND, int(tail) if tail.isdigit() else 0, n.name)

    return sorted(out, key=order)


# -- the driver -------------------------------------------------------------------------------
class RocksDriver(Driver):
    name = "rocks"
    features = frozenset({FEATURE_PUBLIC_ADDRESS})
    settings_type = RocksSettings
    settings: RocksSettings

    def __init__(
        self, settings: RocksSettings, site: SiteContext, run: Callable[[Sequence[str]], str] | None = None
    ) -> None:
        super().__init__(settings, site)
        where = site.config_path or "the site configuration"
        if site.network.mode != "bridge" or site.network.public is None:
            raise ConfigError(
                f'{where}: [network] mode: the rocks driver needs mode = "bridge" with [network.public]: '
                "each Rocks frontend VM gets a public address of its own"
            )
        self.disk_dir = settings.disk_dir or site.staging / "rocks"
        if not SAFE_PATH.match(str(self.disk_dir)):
            raise ConfigError(
                f"{where}: [driver.rocks] disk_dir: {str(self.disk_dir)!r} cannot be handed to Rocks "
                "(letters, digits and . _ / + - only); set disk_dir"
            )
        self.rocks = RocksCommands(settings.command)
        self.run = run or RocksRunner(settings.command_timeout_s)

    # -- reading Rocks ------------------------------------------------------------------------
    def _clusters(self) -> list[ClusterEntry]:
        return parse_list_cluster(self.run(self.rocks.list_cluster()))

    def _ours(self, clusters: Sequence[ClusterEntry], cluster: str | None) -> list[ClusterEntry]:
        prefix = self.settings.name_prefix
        return [
            c
            for c in clusters
            if c.kind == "VM"
            and naming.cluster_of(prefix, c.frontend) is not None
            and (cluster is None or c.frontend == naming.frontend_host(prefix, cluster))
        ]

    def list_nodes(self, cluster: str | None = None) -> list[NodeInfo]:
        ours = self._ours(self._clusters(), cluster)
        if not ours:
            return []
        hosts = [h for c in ours for h in c.hosts]
        vms = parse_list_host_vm(self.run(self.rocks.list_host_vm(hosts)), hosts)
        ifaces = parse_list_host_interface(self.run(self.rocks.list_host_interface(hosts)), hosts)
        return nodes_from(self.settings.name_prefix, ours, vms, ifaces)

    # -- create -------------------------------------------------------------------------------
    def validate(self, spec: ClusterSpec) -> None:
        super().validate(spec)
        check_public(spec)
        check_image(spec)

    def ex_plan(self, spec: ClusterSpec) -> ClusterPlan:
        """The Rocks VMs this driver would make for ``spec`` (nothing is held or written)."""
        public = self.site.network.public
        return plan_cluster(
            spec, self.settings.name_prefix, self.disk_dir, public.gateway if public else None
        )

    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        self.validate(spec)
        deadline = time.monotonic() + timeout
        plan = self.ex_plan(spec)
        if self._ours(self._clusters(), spec.name):
            raise DriverError(f"cluster {spec.name}: Rocks already has its frontend VM {plan.frontend}")
        vlan = self._check_names_and_pick_vlan(plan)
        staging.write_note(plan.directory, vlan)
        plan = self._stage(spec, plan)
        log.info("cluster %s: adding Rocks virtual cluster %s on VLAN %d", spec.name, plan.frontend, vlan)
        made = parse_add_cluster(self.run(add_cluster_command(plan, self.rocks, vlan, self.settings)))
        expected = (plan.frontend, tuple(n.host for n in plan.computes))
        if made != expected:
            raise DriverError(
                f"cluster {spec.name}: rocks add cluster made {made[0]} and computes {list(made[1])}, "
                f"expected {expected[0]} and {list(expected[1])}"
            )
        for argv in configure_commands(plan, self.rocks):
            self.run(argv)
        if on_staged is not None:
            on_staged()
        self._start(plan, deadline)
        return self.list_nodes(spec.name)

    def _check_names_and_pick_vlan(self, plan: ClusterPlan) -> int:
        hosts = {h.host for h in parse_list_host(self.run(self.rocks.list_host())) if h.host}
        taken = sorted(hosts & {n.host for n in plan.nodes})
        if taken:
            raise DriverError(f"cluster {plan.cluster}: Rocks already has hosts named {', '.join(taken)}")
        ifaces = parse_list_host_interface(self.run(self.rocks.list_host_interface()))
        holder = next((i for i in ifaces if i.ip == plan.public_ip), None)
        if holder is not None:
            raise DriverError(
                f"cluster {plan.cluster}: public address {plan.public_ip} is already on "
                f"{holder.host or 'a host'}'s {holder.iface} in Rocks; take it out of [network.public] range"
            )
        vlan = free_vlan(self.settings.vlans, ifaces)
        if vlan is None:
            raise CapacityError(
                f"cluster {plan.cluster}: no free VLAN among the {len(self.settings.vlans)} of "
                "[driver.rocks] vlans"
            )
        return vlan

    def _stage(self, spec: ClusterSpec, plan: ClusterPlan) -> ClusterPlan:
        """Each node's disk overlays and seed; returns the plan with the disks' sizes."""
        nodes = []
        for node in plan.nodes:
            disks = []
            for disk, (base, fmt) in zip(node.disks, node.bases, strict=True):
                staging.create_overlay(base, fmt, disk.path)
                disks.append(replace(disk, size_gib=staging.virtual_size_gib(disk.path)))
            docs = spec.documents.get(node.spec.name)
            if docs is None:
                raise DriverError(f"cluster {spec.name}: no contextualization documents for {node.spec.name}")
            staging.write_seed(node.seed, docs)
            nodes.append(replace(node, disks=tuple(disks)))
        return replace(plan, nodes=tuple(nodes))

    def _start(self, plan: ClusterPlan, deadline: float) -> None:
        started: dict[str, float] = {}
        by_name = {n.spec.name: n for n in plan.nodes}
        for node in plan.nodes:
            parent = by_name.get(node.spec.depends_on or "")
            if parent is not None:
                self._wait_running(plan.cluster, [parent.host], deadline)
                pause = node.spec.wait_seconds - (time.monotonic() - started.get(parent.host, 0.0))
                if pause > 0:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            log.info("cluster %s: starting %s", plan.cluster, node.host)
            self.run(self.rocks.start_host_vm(node.host))
            started[node.host] = time.monotonic()
        self._wait_running(plan.cluster, [n.host for n in plan.nodes], deadline)

    def _wait_running(self, cluster: str, hosts: list[str], deadline: float) -> None:
        pending = set(hosts)
        while True:
            for node in self.list_nodes(cluster):
                host = node.extra.get("rocks_host")
                if host not in pending:
                    continue
                if node.state is NodeState.RUNNING:
                    pending.discard(host)
                elif node.state is NodeState.ERROR:
                    raise DriverError(f"VM {host} is {node.extra.get('rocks_status')} while booting")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"VMs {', '.join(sorted(pending))} not active within the boot timeout")
            time.sleep(self.settings.poll_interval_s)

    # -- shutdown / clean ----------------------------------------------------------------------
    def _stop(self, entry: ClusterEntry) -> int:
        """Stop the entry's active VMs, computes first; returns how many."""
        members = [*entry.clients, None]
        stopped = 0
        for member in members:
            host, status = (member.name, member.status) if member else (entry.frontend, entry.status)
            if status in STOPPABLE:
                log.info("stopping VM %s", host)
                self.run(self.rocks.stop_host_vm(host))
                stopped += 1
        return stopped

    def shutdown(self, cluster: str) -> int:
        return sum(self._stop(entry) for entry in self._ours(self._clusters(), cluster))

    def clean(self, cluster: str) -> CleanResult:
        """Remove the Rocks virtual cluster, anything a half-made one left in Rocks, and its
        files. The files stay when Rocks failed, so that cleaning again can finish."""
        prefix = self.settings.name_prefix
        frontend = naming.frontend_host(prefix, cluster)
        directory = self.disk_dir / cluster
        removed = 0
        released: list[str] = []
        clusters = self._clusters()
        for entry in self._ours(clusters, cluster):
            self._stop(entry)
            log.info("cluster %s: removing Rocks virtual cluster %s", cluster, frontend)
            self.run(self.rocks.remove_cluster(entry.frontend))
            removed += len(entry.hosts)
        removed += self._remove_strays(cluster, frontend)
        vlan = staging.read_note(directory)
        if vlan is not None:
            released += self._release_vlan(vlan, clusters)
        had_files = directory.exists()
        shutil.rmtree(directory, ignore_errors=True)
        return CleanResult(removed_nodes=removed, removed_files=had_files, released=tuple(released))

    def _remove_strays(self, cluster: str, frontend: str) -> int:
        """VMs with this cluster's names that no Rocks cluster holds (none, unless a half-made
        cluster lost its frontend)."""
        try:
            vms = parse_list_host_vm(self.run(self.rocks.list_host_vm([])), ())
        except RocksParseError:  # one VM in all of Rocks: it printed no VM-HOST column
            log.warning("cluster %s: cannot tell the only VM's name; not looking for strays", cluster)
            return 0
        strays = [h for h in vms if naming.node_of(cluster, frontend, h)[0] != h]
        if strays:
            log.info("cluster %s: removing stray VMs %s", cluster, ", ".join(strays))
            self.run(self.rocks.remove_host(strays))
        return len(strays)

    def _release_vlan(self, vlan: int, clusters: Sequence[ClusterEntry]) -> list[str]:
        """The ``vlanN`` interfaces of physical hosts when no VM is on VLAN N any more (what
        ``rocks add cluster`` leaves when it fails before its frontend VM is made)."""
        ifaces = parse_list_host_interface(self.run(self.rocks.list_host_interface()))
        device = f"vlan{vlan}"
        if any(i.vlan == vlan and i.iface != device for i in ifaces):
            return []  # in use by a VM (ours are gone: another cluster's now)
        physical = next((c.frontend for c in clusters if c.kind == "physical"), None)
        released = []
        for iface in ifaces:
            if iface.iface == device and iface.vlan == vlan:
                host = iface.host or physical
                if host is None:
                    raise DriverError(f"cannot tell which host holds the stray interface {device}")
                log.info("removing the stray interface %s of %s", device, host)
                self.run(self.rocks.remove_host_interface(host, device))
                released.append(f"vlan {vlan} on {host}")
        return released

    # -- check ----------------------------------------------------------------------------------
    def check(self) -> DriverHealth:
        try:
            version = parse_version(self.run(self.rocks.report_version()))
            clusters = self._clusters()
            ifaces = parse_list_host_interface(self.run(self.rocks.list_host_interface()))
        except DriverError as exc:
            return DriverHealth(False, str(exc))
        ours = self._ours(clusters, None)
        used = {i.vlan for i in ifaces if i.vlan}
        free = sum(1 for v in self.settings.vlans if v not in used)
        physical = next((c.frontend for c in clusters if c.kind == "physical"), None)
        return DriverHealth(
            True,
            f"Rocks {version} at {self.settings.command}: {len(ours)} PCC clusters, {free} VLANs free",
            {"rocks_version": version, "frontend": physical, "clusters": len(ours), "vlans_free": free},
        )
