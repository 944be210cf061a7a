"""The OpenNebula driver: one VM per node, made through OpenNebula's XML-RPC API (pyone),
and read back from OpenNebula (``one.vmpool.info`` to find a cluster's VMs by their label,
``one.vm.info`` for each) — never from bookkeeping of its own.

A node boots from what its repository entry names (:mod:`.sources`): a VM template,
instantiated with the node's size, NICs and CONTEXT merged over it, or an image, attached to
a VM the driver describes whole. A persistent image is cloned once per cluster and role
(a persistent image holds one VM at a time) and the clone deleted on clean.

The cluster's private network is made per cluster (:mod:`.vmtemplate`): a virtual network
of its own (``private_mode = "create"``) or a reservation of the planned addresses from a
configured network (``"reserve"``). Shutdown terminates the VMs; clean waits until they are
gone, then deletes the clones and the private network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcc.common.errors import DriverError, UnsupportedError
from pcc.common.protocol import ACTIVE as ACTIVE_STATES
from pcc.drivers.base import (
    FEATURE_ENT,
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
from pcc.drivers.opennebula import vmtemplate
from pcc.drivers.opennebula.client import MINE, NoSuchObject, OneClient
from pcc.drivers.opennebula.settings import OpenNebulaSettings, Source, settings_summary
from pcc.drivers.opennebula.sources import source_for
from pcc.drivers.opennebula.states import ACTIVE, LCM_STATES, describe, node_state
from pcc.drivers.opennebula.vmtemplate import Networks, clone_name, label, vm_name, vnet_name

log = logging.getLogger(__name__)

ROLES: dict[str, Role] = {r.value: r for r in Role}
IMAGE_READY, IMAGE_ERROR = 1, 5
VNET_READY, VNET_ERROR = 1, 5
# ACTIVE VMs already on their way out: asking again would be refused as the wrong state.
TERMINATING = frozenset(
    LCM_STATES[n] for n in ("EPILOG", "SHUTDOWN", "CLEANUP_DELETE", "CLEANUP_RESUBMIT", "EPILOG_STOP")
)


@dataclass(frozen=True)
class BootSource:
    """A role's source resolved to OpenNebula IDs."""

    kind: str  # "template" or "image"
    id: int
    context: Mapping[str, str] = field(default_factory=dict)  # the template's own CONTEXT


def _items(value: Any) -> list[Any]:
    """A template attribute that may appear once (a dict) or many times (a list)."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def _labels(user_template: Any) -> list[str]:
    text = user_template.get("LABELS", "") if isinstance(user_template, Mapping) else ""
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


class OpenNebulaDriver(Driver):
    name = "opennebula"
    # ENT is done where the site names its ENT networks as OpenNebula networks; validate()
    # refuses it (as the base class does) where it names none.
    features = frozenset({FEATURE_ENT, FEATURE_PUBLIC_ADDRESS})
    settings_type = OpenNebulaSettings
    settings: OpenNebulaSettings

    def __init__(self, settings: OpenNebulaSettings, site: SiteContext) -> None:
        super().__init__(settings, site)
        self.client = OneClient(settings)

    # -- validate --------------------------------------------------------------------------
    def validate(self, spec: ClusterSpec) -> None:
        if spec.network.ent and not self.settings.ent_networks:
            names = ", ".join(e.name for e in spec.network.ent)
            raise UnsupportedError(
                f"ENT networks ({names}) are not supported at this site (driver {self.name}: "
                "[driver.opennebula] ent_networks names none)"
            )
        super().validate(spec)
        for ent in spec.network.ent:
            if ent.name not in self.settings.ent_networks:
                raise UnsupportedError(
                    f"ENT network {ent.name} is not supported at this site (driver {self.name}: "
                    "no OpenNebula network for it in [driver.opennebula] ent_networks)"
                )
        for role in sorted({n.role.value for n in spec.nodes}):
            source_for(spec, role, self.settings)

    # -- create ----------------------------------------------------------------------------
    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        self.validate(spec)
        deadline = time.monotonic() + timeout
        missing = [n.name for n in spec.nodes if n.name not in spec.documents]
        if missing:
            raise DriverError(f"cluster {spec.name}: no contextualization documents for {', '.join(missing)}")
        roles = sorted({n.role.value for n in spec.nodes})
        boots = {
            role: self._resolve(spec.name, role, source_for(spec, role, self.settings), deadline)
            for role in roles
        }
        nets = self._networks(spec, deadline)
        files = self._write_files(spec)
        if on_staged is not None:
            on_staged()
        existing = {n.name for n in self.list_nodes(spec.name)}
        started: dict[str, float] = {}
        for node in sorted(spec.nodes, key=lambda n: n.role is not Role.FRONTEND):
            if node.depends_on:
                self._wait_running(spec.name, [node.depends_on], deadline)
                since = started.get(node.depends_on, time.monotonic() - node.wait_seconds)
                pause = node.wait_seconds - (time.monotonic() - since)
                if pause > 0:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            if node.name in existing:
                log.info("cluster %s: %s exists already", spec.name, vm_name(node.name))
                continue
            self._create_vm(spec, node, boots[node.role.value], nets, files.get(node.name))
            started[node.name] = time.monotonic()
        self._wait_running(spec.name, [n.name for n in spec.nodes], deadline)
        return self.list_nodes(spec.name)

    def _resolve(self, cluster: str, role: str, source: Source, deadline: float) -> BootSource:
        one = self.client
        if source.kind == "template":
            tpl = one.by_name_or_id("templatepool", "template", source.ref)
            body = tpl.TEMPLATE if isinstance(tpl.TEMPLATE, Mapping) else {}
            ctx = body.get("CONTEXT")
            return BootSource("template", int(tpl.ID), dict(ctx) if isinstance(ctx, Mapping) else {})
        img = one.by_name_or_id("imagepool", "image", source.ref)
        if int(img.PERSISTENT) != 1:
            return BootSource("image", int(img.ID))
        # A persistent image holds one VM at a time: the cluster's nodes of this role boot
        # from a (non-persistent) clone of it, each from its own copy.
        name = clone_name(cluster, role)
        found = [i for i in one.pool("imagepool", "image", MINE) if name == i.NAME]
        if found:
            clone_id = int(found[0].ID)
        else:
            log.info("cluster %s: cloning persistent image %s to %s", cluster, img.NAME, name)
            clone_id = int(
                one.call(
                    f"clone image {img.NAME}",
                    "image.clone",
                    int(img.ID),
                    name,
                    self.settings.clone_datastore_id,
                )
            )
        self._until(f"image {name} ready", lambda: self._image_ready(clone_id), deadline)
        return BootSource("image", clone_id)

    def _image_ready(self, image_id: int) -> bool:
        img = self.client.call("read an image", "image.info", image_id, False)
        if int(img.STATE) == IMAGE_ERROR:
            raise DriverError(f"OpenNebula image {img.NAME} ({image_id}) is in the ERROR state")
        return int(img.STATE) == IMAGE_READY

    def _networks(self, spec: ClusterSpec, deadline: float) -> Networks:
        one = self.client
        public = int(one.by_name_or_id("vnpool", "network", self.settings.public_network).ID)
        ent = {
            e.name: int(one.by_name_or_id("vnpool", "network", self.settings.ent_networks[e.name]).ID)
            for e in spec.network.ent
        }
        private = None
        if vmtemplate.private_addresses(spec):
            private = self._private_network(spec, deadline)
        return Networks(public=public, private=private, ent=ent)

    def _private_network(self, spec: ClusterSpec, deadline: float) -> int:
        one = self.client
        name = vnet_name(spec.name)
        for vnet in self._own_vnets(name):
            if int(vnet.USED_LEASES) > 0:  # a retry: its nodes hold it
                return int(vnet.ID)
            # left by an earlier cluster of this name (shut down, never cleaned): its address
            # ranges were for that cluster's plan
            self._delete_vnet(int(vnet.ID), name, deadline)
        if self.settings.private_mode == "create":
            text = vmtemplate.private_vnet(spec, self.settings.private_vnet).render()
            vnet_id = int(
                one.call(f"create network {name}", "vn.allocate", text, self.settings.vnet_cluster_id)
            )
        else:
            vnet_id = self._reserve(spec, name)
        self._until(f"network {name} ready", lambda: self._vnet_ready(vnet_id), deadline)
        return vnet_id

    def _reserve(self, spec: ClusterSpec, name: str) -> int:
        one = self.client
        parent = one.by_name_or_id("vnpool", "network", self.settings.reserve_from)
        doc = one.call(f"read network {parent.NAME}", "vn.info", int(parent.ID), False)
        ranges = []
        for ar in _items(getattr(doc.AR_POOL, "AR", None)):
            with contextlib.suppress(ValueError, TypeError):
                ranges.append((str(ar.AR_ID), int(_ip(ar.IP)), int(ar.SIZE)))
        reservation: int | None = None
        for ip in vmtemplate.private_addresses(spec):
            value = int(_ip(ip))
            ar_id = next((a for a, first, size in ranges if first <= value < first + size), None)
            if ar_id is None:
                raise DriverError(
                    f"the planned private address {ip} is in no address range of OpenNebula network "
                    f"{parent.NAME}; its ranges must cover [network] private_cidr"
                )
            text = vmtemplate.reservation(
                name if reservation is None else None, ip, ar_id, reservation
            ).render()
            made = int(one.call(f"reserve {ip} from {parent.NAME}", "vn.reserve", int(parent.ID), text))
            reservation = made if reservation is None else reservation
        assert reservation is not None
        return reservation

    def _vnet_ready(self, vnet_id: int) -> bool:
        vnet = self.client.call("read a network", "vn.info", vnet_id, False)
        if int(vnet.STATE) == VNET_ERROR:
            raise DriverError(f"OpenNebula network {vnet.NAME} ({vnet_id}) is in the ERROR state")
        return int(vnet.STATE) == VNET_READY

    def _own_vnets(self, name: str) -> list[Any]:
        return [v for v in self.client.pool("vnpool", "network", MINE) if name == v.NAME]

    def _write_files(self, spec: ClusterSpec) -> dict[str, str]:
        """With ``files_dir``: each node's vc-out.xml where OpenNebula reads CONTEXT FILES."""
        if self.settings.files_dir is None:
            return {}
        out = {}
        for node in spec.nodes:
            directory = self.settings.files_dir / spec.name / node.name
            directory.mkdir(parents=True, exist_ok=True, mode=0o755)
            path = directory / "vc-out.xml"
            path.write_text(spec.documents[node.name].vc_out)
            path.chmod(0o644)
            out[node.name] = str(path)
        return out

    def _create_vm(
        self, spec: ClusterSpec, node: NodeSpec, boot: BootSource, nets: Networks, files: str | None
    ) -> int:
        docs = spec.documents[node.name]
        nic_list = vmtemplate.nics(node, spec, nets)
        name = vm_name(node.name)
        log.info("cluster %s: creating %s from %s %d", spec.name, name, boot.kind, boot.id)
        if boot.kind == "template":
            ctx = vmtemplate.context(node, docs, spec.ssh_key, boot.context, files)
            extra = vmtemplate.vm_attributes(node, nic_list, ctx).render()
            return int(
                self.client.call(
                    f"instantiate {name}", "template.instantiate", boot.id, name, False, extra, False
                )
            )
        ctx = vmtemplate.context(node, docs, spec.ssh_key, None, files)
        text = vmtemplate.vm_template(node, nic_list, ctx, {"IMAGE_ID": boot.id}).render()
        return int(self.client.call(f"create {name}", "vm.allocate", text, False))

    def _wait_running(self, cluster: str, nodes: Sequence[str], deadline: float) -> None:
        pending = set(nodes)
        while True:
            for info in self.list_nodes(cluster):
                if info.name not in pending:
                    continue
                if info.state is NodeState.RUNNING:
                    pending.discard(info.name)
                elif info.state in (NodeState.ERROR, NodeState.STOPPED):
                    why = info.extra.get("error") or "no message"
                    native = info.extra.get("one_state")
                    raise DriverError(
                        f"node {info.name} is {info.state.value} ({native}) while booting: {why}"
                    )
            if not pending:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"nodes {', '.join(sorted(pending))} not running within the boot timeout")
            time.sleep(self.settings.poll_interval_s)

    def _until(self, what: str, done: Callable[[], bool], deadline: float) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise DriverError(f"OpenNebula: timed out waiting for {what}")
            time.sleep(self.settings.poll_interval_s)

    # -- list ------------------------------------------------------------------------------
    def list_nodes(self, cluster: str | None = None) -> list[NodeInfo]:
        out = []
        for vm in self.client.vms():
            labels = _labels(vm.USER_TEMPLATE)
            if cluster is not None and label(cluster) not in labels:
                continue
            if cluster is None and not any(x.startswith(vmtemplate.LABEL_PREFIX) for x in labels):
                continue
            try:
                full = self.client.call(f"read VM {vm.ID}", "vm.info", int(vm.ID), False)
            except NoSuchObject:
                continue  # removed while we listed
            info = self.node_info(full)
            if info is not None and (cluster is None or info.cluster == cluster):
                out.append(info)
        return sorted(out, key=lambda n: (n.cluster, n.role is not Role.FRONTEND, n.name))

    def node_info(self, vm: Any) -> NodeInfo | None:
        """A node as ``one.vm.info`` describes its VM (None: not one of PCC's)."""
        user = vm.USER_TEMPLATE if isinstance(vm.USER_TEMPLATE, Mapping) else {}
        body = vm.TEMPLATE if isinstance(vm.TEMPLATE, Mapping) else {}
        cluster, node, role = (str(user.get(k) or "") for k in ("PCC_CLUSTER", "PCC_NODE", "PCC_ROLE"))
        if not cluster or not node or role not in ROLES:
            return None
        state, lcm = int(vm.STATE), int(vm.LCM_STATE)
        nic_list = [n for n in _items(body.get("NIC")) if isinstance(n, Mapping)]
        private = next((n.get("IP") for n in nic_list if n.get("NETWORK") == vnet_name(cluster)), None)
        public_ref = self.settings.public_network
        public = next(
            (n.get("IP") for n in nic_list if public_ref in (n.get("NETWORK"), str(n.get("NETWORK_ID")))),
            None,
        )
        return NodeInfo(
            cluster=cluster,
            name=node,
            role=ROLES[role],
            state=node_state(state, lcm),
            vcpus=_count(body.get("VCPU") or body.get("CPU")),
            memory_mib=_count(body.get("MEMORY")),
            private_ip=private or None,
            public_ip=(public or None) if role == Role.FRONTEND.value else None,
            extra={
                "vm_id": int(vm.ID),
                "vm_name": vm.NAME,
                "one_state": describe(state, lcm),
                "terminating": state == ACTIVE and lcm in TERMINATING,
                "error": user.get("ERROR") or None,
                "macs": [n.get("MAC") for n in nic_list],
            },
        )

    # -- shutdown / clean ------------------------------------------------------------------
    def shutdown(self, cluster: str) -> int:
        """Terminate the cluster's VMs (OpenNebula keeps nothing of a terminated VM)."""
        nodes = self.list_nodes(cluster)
        self._terminate(nodes)
        return sum(1 for n in nodes if n.state in ACTIVE_STATES)

    def _terminate(self, nodes: Iterable[NodeInfo]) -> None:
        for info in nodes:
            if info.extra.get("terminating"):
                continue
            with contextlib.suppress(NoSuchObject):
                self.client.call(
                    f"terminate {info.name}", "vm.action", "terminate-hard", int(info.extra["vm_id"])
                )

    def clean(self, cluster: str) -> CleanResult:
        """Terminate what is left, wait until OpenNebula has let go of it, then delete the
        cluster's image clones and private network; its files go even when OpenNebula
        failed (the error is raised afterwards)."""
        deadline = time.monotonic() + self.settings.cleanup_timeout_s
        removed = 0
        released: list[str] = []
        failure: DriverError | None = None
        try:
            nodes = self.list_nodes(cluster)
            removed = len(nodes)
            self._terminate(nodes)
            self._until(f"cluster {cluster}'s VMs to be gone", lambda: not self.list_nodes(cluster), deadline)
            for role in ROLES:
                name = clone_name(cluster, role)
                for img in [i for i in self.client.pool("imagepool", "image", MINE) if name == i.NAME]:
                    self._delete_image(int(img.ID), name, deadline)
                    released.append(f"image {name}")
            name = vnet_name(cluster)
            for vnet in self._own_vnets(name):
                self._delete_vnet(int(vnet.ID), name, deadline)
                released.append(f"network {name}")
        except DriverError as exc:
            failure = exc
        had_files = False
        if self.settings.files_dir is not None:
            directory = self.settings.files_dir / cluster
            had_files = directory.exists()
            shutil.rmtree(directory, ignore_errors=True)
        if failure is not None:
            raise failure
        return CleanResult(removed_nodes=removed, removed_files=had_files, released=tuple(released))

    def _delete_image(self, image_id: int, name: str, deadline: float) -> None:
        with contextlib.suppress(NoSuchObject):
            self.client.call(f"delete image {name}", "image.delete", image_id, False)
        self._until(f"image {name} to be deleted", lambda: self._gone("image.info", image_id), deadline)

    def _delete_vnet(self, vnet_id: int, name: str, deadline: float) -> None:
        with contextlib.suppress(NoSuchObject):
            self.client.call(f"delete network {name}", "vn.delete", vnet_id)
        self._until(f"network {name} to be deleted", lambda: self._gone("vn.info", vnet_id), deadline)

    def _gone(self, method: str, object_id: int) -> bool:
        try:
            self.client.call("read", method, object_id, False)
        except NoSuchObject:
            return True
        return False

    # -- check -----------------------------------------------------------------------------
    def check(self) -> DriverHealth:
        try:
            version = self.client.call("read the version", "system.version")
        except DriverError as exc:
            return DriverHealth(False, str(exc), settings_summary(self.settings))
        return DriverHealth(
            True,
            f"OpenNebula {version} at {self.settings.endpoint} as {self.settings.user}",
            {**settings_summary(self.settings), "opennebula_version": str(version)},
        )

    def ex_files_dir(self, cluster: str) -> Path | None:
        """Where the cluster's vc-out.xml files are (with ``files_dir``)."""
        return self.settings.files_dir / cluster if self.settings.files_dir is not None else None


def _ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(str(text))


def _count(value: Any) -> int:
    try:
        return max(1, round(float(str(value))))
    except (TypeError, ValueError):
        return 0
