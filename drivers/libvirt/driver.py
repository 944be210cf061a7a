"""The libvirt driver: a neutral cluster spec staged as qcow2 overlays and NoCloud seeds,
its domains built from the image's own ``<domain>``, defined and started through
libvirt-python, and read back from libvirt (never from our bookkeeping).

Settings (``[driver.libvirt]`` in the site config, read by :class:`LibvirtSettings`):

* ``uri`` — libvirt connection, default ``qemu:///session`` (the site account's own
  daemon, started by libvirt on first use; no root needed);
* ``domain_type`` — ``kvm`` where the host has working KVM, ``qemu`` (software emulation)
  where not, or ``auto`` (``kvm`` when ``/dev/kvm`` is usable by this user);
* ``ready_marker`` — optional regular expression the guest prints on its serial console
  when it is up; until then a running domain is reported as ``booting``.

The site's ``[network]`` table decides how NICs attach (:mod:`.network`). Each domain
carries a ``<metadata>`` element with its cluster, role and addresses, so ``list`` needs
nothing but libvirt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from lxml import etree

from pcc.common.errors import DriverError
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import (
    FEATURE_ENT,
    FEATURE_PUBLIC_ADDRESS,
    FEATURE_VOLUMES,
    CleanResult,
    ClusterSpec,
    Driver,
    DriverHealth,
    DriverSettings,
    NodeInfo,
    NodeState,
    Role,
    SiteContext,
)
from pcc.drivers.libvirt import hub
from pcc.drivers.libvirt.domain import NS, PREFIX, ClusterLayout, DomainPlan, build_domain_xml, domain_name
from pcc.drivers.libvirt.layout import cluster_dir, plan_cluster, template
from pcc.drivers.libvirt.overlays import create_overlay
from pcc.drivers.libvirt.ports import ClusterPorts
from pcc.drivers.libvirt.seed import seed_files, write_seed

log = logging.getLogger(__name__)

try:  # optional dependency: only sites using this driver need libvirt-python
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - reported by check()/connect()
    libvirt = None
    libvirt_qemu = None

DOMAIN_TYPES = ("auto", "kvm", "qemu")
ROLES: dict[str, Role] = {r.value: r for r in Role}


def native_states() -> dict[int, NodeState]:
    """libvirt's domain states onto PCC's (read with ``.get(state, NodeState.UNKNOWN)``)."""
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


@dataclass(frozen=True)
class LibvirtSettings(DriverSettings):
    """``[driver.libvirt]``: see the module docstring."""

    uri: str = "qemu:///session"
    domain_type: str = "auto"
    ready_marker: str | None = None

    @classmethod
    def from_toml(cls, reader: TomlReader) -> Self:
        cls.reject_unknown(reader)
        kind = reader.get("domain_type", str, "auto")
        if kind not in DOMAIN_TYPES:
            raise reader.fail("domain_type", f"must be auto, kvm or qemu, got {kind!r}")
        marker = reader.get("ready_marker", str, "") or None
        if marker is not None:
            try:
                re.compile(marker)
            except re.error as exc:
                raise reader.fail("ready_marker", f"not a regular expression: {exc}") from None
        return cls(uri=reader.get("uri", str, "qemu:///session"), domain_type=kind, ready_marker=marker)


class LibvirtDriver(Driver):
    name = "libvirt"
    features = frozenset({FEATURE_ENT, FEATURE_VOLUMES, FEATURE_PUBLIC_ADDRESS})
    settings_type = LibvirtSettings
    settings: LibvirtSettings

    def __init__(self, settings: LibvirtSettings, site: SiteContext) -> None:
        super().__init__(settings, site)
        self.uri = settings.uri
        kind = settings.domain_type
        self.domain_type = (
            kind if kind != "auto" else ("kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "qemu")
        )
        self.ready_marker = re.compile(settings.ready_marker) if settings.ready_marker else None
        self.ports = ClusterPorts(site.staging, site.network)
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

    # -- create ----------------------------------------------------------------------------
    def ex_plan(
        self, spec: ClusterSpec, forward_port: int | None = None, links: Sequence[int] = ()
    ) -> ClusterLayout:
        """The domains this driver would define for ``spec`` (nothing is held or written)."""
        return plan_cluster(spec, self.site, forward_port, links)

    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        self.validate(spec)
        deadline = time.monotonic() + timeout
        user = self.site.network.mode == "user"
        forward = self.ports.forward_port(spec.name) if user else None
        links = self.ports.link_ports(spec.name, len(spec.nodes) + 1) if user and len(spec.nodes) > 1 else ()
        layout = plan_cluster(spec, self.site, forward, links)
        layout.directory.mkdir(parents=True, exist_ok=True)
        if links:
            hub.start(links[0], layout.directory / "hub.pid")
        self._stage(spec, layout)
        if on_staged is not None:
            on_staged()
        self._deploy(layout, deadline)
        return list(self.list_nodes(spec.name))

    def _stage(self, spec: ClusterSpec, layout: ClusterLayout) -> None:
        """Overlays on the image's disks, and each node's seed."""
        for node in layout.nodes:
            tpl = template(spec, node.role.value)
            for staged, source in zip(node.disks, tpl.disks, strict=True):
                if source.kind == "file":
                    assert source.path is not None
                    base = source.path
                else:
                    base = Path(self.ex_volume_path(str(source.pool), str(source.volume)))
                create_overlay(base, source.format, staged.path, staged.target, staged.bus)
        for node in layout.nodes:
            docs = spec.documents.get(node.name)
            if docs is None:
                raise DriverError(f"cluster {spec.name}: no contextualization documents for {node.name}")
            (layout.directory / f"{node.name}-vc-out.xml").write_text(docs.vc_out)
            write_seed(layout.directory, seed_files(docs), node.seed)

    def _deploy(self, layout: ClusterLayout, deadline: float) -> None:
        conn = self.connect()
        order = sorted(layout.nodes, key=lambda n: n.role is not Role.FRONTEND)
        started: dict[str, float] = {}
        for node in order:
            if node.depends_on:
                self._wait_running(layout.name, [node.depends_on], deadline)
                pause = node.wait_seconds - (time.monotonic() - started.get(node.depends_on, 0.0))
                if pause > 0:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            xml = build_domain_xml(node, self.domain_type)
            log.info("cluster %s: defining and starting %s", layout.name, domain_name(node.name))
            dom = self._call(f"define {node.name}", conn.defineXML, xml)
            self._call(f"start {node.name}", dom.create)
            started[node.name] = time.monotonic()
            self._forward_ports(dom, node)
        self._wait_running(layout.name, [n.name for n in layout.nodes], deadline)

    def _forward_ports(self, dom: Any, node: DomainPlan) -> None:
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

    # -- list / shutdown / clean -------------------------------------------------------------
    def list_nodes(self, cluster: str | None = None) -> list[NodeInfo]:
        table = native_states()
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
                NodeInfo(
                    cluster=meta.get("cluster", ""),
                    name=meta.get("name", dom.name()[len(PREFIX) :]),
                    role=ROLES.get(meta.get("role", ""), Role.COMPUTE),
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

    def clean(self, cluster: str) -> CleanResult:
        """Undefine the domains, then remove the cluster's files, hub and ports — the last
        even when libvirt failed, so a half-made cluster never holds them (the error is
        raised afterwards)."""
        removed = 0
        failure: DriverError | None = None
        try:
            for dom in self._domains(cluster):
                if self._call("read state", dom.isActive):
                    self._call(f"destroy {dom.name()}", dom.destroy)
                flags = (
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                )
                self._call(f"undefine {dom.name()}", dom.undefineFlags, flags)
                removed += 1
        except DriverError as exc:
            failure = exc
        cdir = cluster_dir(self.site.staging, cluster)
        had_files = cdir.exists()
        with contextlib.suppress(OSError):
            hub.stop(cdir / "hub.pid")
        shutil.rmtree(cdir, ignore_errors=True)
        released = self.ports.release(cluster) if self.site.network.mode == "user" else ()
        if failure is not None:
            raise failure
        return CleanResult(removed_nodes=removed, removed_files=had_files, released=released)

    # -- check -----------------------------------------------------------------------------
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
