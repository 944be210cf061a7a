"""What the site tool does, independent of how it is asked and of the back-end: validate a
request, lock, plan the cluster as a neutral :class:`~pcc.drivers.base.ClusterSpec`
(nodes, addresses, contextualization texts), hand it to the driver, and undo all of it on
failure or on request."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcc import __version__
from pcc.common import names
from pcc.common.errors import CapacityError, ConfigError, PccError, TemporaryError, UserInputError
from pcc.common.keys import normalize_public_key
from pcc.common.locks import file_lock
from pcc.common.protocol import (
    ACTIVE,
    ActionResult,
    BootResult,
    Capacity,
    CheckReport,
    ImageInfo,
    NodeInfo,
    Role,
)
from pcc.common.tomlcfg import TomlReader
from pcc.drivers import UnknownDriver, load_driver
from pcc.drivers.base import (
    ClusterSpec,
    Driver,
    EntRequest,
    ImageRef,
    Interface,
    NetworkIntent,
    NodeSpec,
    SiteContext,
)
from pcc.site import context
from pcc.site.addresses import AddressPool
from pcc.site.config import SiteConfig
from pcc.site.repository import Image, NodeTemplate, Repository

log = logging.getLogger(__name__)

# User mode: the frontend's public interface is on a NAT network private to the host, as
# the guest sees it (QEMU user networking's numbers; the libvirt driver checks them).
NAT_GUEST, NAT_PREFIX, NAT_GATEWAY, NAT_DNS = "10.0.2.15", 24, "10.0.2.2", "10.0.2.3"


def _locked(path: Path) -> bool:
    """Whether another open file holds ``path``'s flock (a boot in flight holds its cluster's)."""
    try:
        with open(path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


@dataclass(frozen=True)
class BootRequest:
    image: str
    cpus: int
    key_path: Path
    cluster: str | None = None
    memory_frontend_mib: int | None = None
    memory_compute_mib: int | None = None
    add_ifaces: tuple[tuple[str, str | None], ...] = ()
    enable_ent: bool = False


def mac_for(cluster: str, node: str, index: int) -> str:
    """A stable, locally administered MAC (QEMU's 52:54:00 prefix) per cluster, node and NIC."""
    digest = hashlib.sha256(f"{cluster}/{node}/{index}".encode()).digest()
    return "52:54:00:{:02x}:{:02x}:{:02x}".format(*digest[:3])


class SiteService:
    def __init__(self, config: SiteConfig, driver: Driver | None = None) -> None:
        self.config = config
        self._driver = driver
        self.repository = Repository(config.repository)

    # -- parts ---------------------------------------------------------------------------
    @property
    def site_context(self) -> SiteContext:
        cfg = self.config
        return SiteContext(cfg.name, cfg.staging, cfg.network, cfg.path)

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            cfg = self.config
            reader = TomlReader(cfg.path, cfg.driver_settings, f"driver.{cfg.driver}")
            try:
                self._driver = load_driver(cfg.driver, reader, self.site_context)
            except UnknownDriver as exc:
                raise ConfigError(f"{cfg.path}: [driver] name: {exc}") from None
        return self._driver

    def public_pool(self) -> AddressPool:
        """Bridge mode: the frontends' public addresses (user mode has none of its own)."""
        public = self.config.network.public
        return AddressPool(self.config.staging / "allocations.json", list(public.addresses) if public else [])

    @contextlib.contextmanager
    def _cluster_lock(self, cluster: str) -> Iterator[None]:
        with file_lock(self.config.staging / "locks" / f"{cluster}.lock"):
            yield

    # -- repository ----------------------------------------------------------------------
    def list_repository(self) -> list[ImageInfo]:
        out = []
        for image in self.repository.images():
            roles: dict[str, Any] = {}
            for role, tpl in (("frontend", image.frontend), ("compute", image.compute)):
                if tpl is None:
                    continue
                roles[role] = {
                    "vcpus": tpl.vcpus,
                    "memory_mib": tpl.memory_mib,
                    "disks": [
                        {
                            "source": d.describe(),
                            "format": d.format,
                            "size_bytes": d.path.stat().st_size if d.path and d.path.exists() else None,
                        }
                        for d in tpl.disks
                    ],
                }
            out.append(ImageInfo(image.name, image.description, image.format, roles))
        return out

    # -- capacity ------------------------------------------------------------------------
    def usage(self, nodes: Sequence[NodeInfo] | None = None) -> tuple[int, int]:
        nodes = self.driver.list_nodes() if nodes is None else nodes
        active = [n for n in nodes if n.state in ACTIVE]
        return sum(n.vcpus for n in active), sum(n.memory_mib for n in active)

    # -- boots in flight -----------------------------------------------------------------
    @property
    def _claims_dir(self) -> Path:
        return self.config.staging / "claims"

    def _claim(self, spec: ClusterSpec) -> Path:
        """Record what a boot in flight takes (called under the site lock, after the check)."""
        self._claims_dir.mkdir(parents=True, exist_ok=True)
        path = self._claims_dir / f"{spec.name}.json"
        cpus, memory = sum(n.vcpus for n in spec.nodes), sum(n.memory_mib for n in spec.nodes)
        path.write_text(json.dumps({"cpus": cpus, "memory_mib": memory}))
        return path

    def _claimed(self, nodes: Sequence[NodeInfo]) -> tuple[int, int]:
        """CPUs and memory claimed by boots in flight whose nodes the driver does not list
        yet. A claim whose boot died with it (its cluster lock is free) is dropped."""
        listed = {n.cluster for n in nodes}
        cpus = memory = 0
        for path in sorted(self._claims_dir.glob("*.json")) if self._claims_dir.is_dir() else []:
            cluster = path.stem
            if cluster in listed:
                continue
            if not _locked(self.config.staging / "locks" / f"{cluster}.lock"):
                path.unlink(missing_ok=True)
                continue
            try:
                doc = json.loads(path.read_text())
                cpus, memory = cpus + int(doc["cpus"]), memory + int(doc["memory_mib"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or gone: the lock says its boot is alive; skip it
        return cpus, memory

    @contextlib.contextmanager
    def _boot_slot(self, cluster: str) -> Iterator[None]:
        """One of the site's `max_boots` turns, waited for up to the boot timeout."""
        deadline = time.monotonic() + self.config.boot_timeout_s
        slots = [self.config.staging / "locks" / f"_boot-{k}.lock" for k in range(self.config.max_boots)]
        slots[0].parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            for path in slots:
                with open(path, "a") as fh:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    if waited:
                        log.info("cluster %s: a boot turn is free", cluster)
                    try:
                        yield
                    finally:
                        fcntl.flock(fh, fcntl.LOCK_UN)
                    return
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"site {self.config.name}: {self.config.max_boots} boots running for "
                    f"{self.config.boot_timeout_s:.0f} s; cluster {cluster} did not get a turn"
                )
            if not waited:
                log.info("cluster %s: %d boots running; waiting for a turn", cluster, self.config.max_boots)
                waited = True
            time.sleep(0.2)

    def _check_capacity(self, spec: ClusterSpec) -> None:
        nodes = self.driver.list_nodes()
        used_cpus, used_mem = self.usage(nodes)
        claimed_cpus, claimed_mem = self._claimed(nodes)
        used_cpus, used_mem = used_cpus + claimed_cpus, used_mem + claimed_mem
        want_cpus = sum(n.vcpus for n in spec.nodes)
        want_mem = sum(n.memory_mib for n in spec.nodes)
        free_cpus = self.config.usable_cpus - used_cpus
        free_mem = self.config.usable_memory_mb - used_mem
        if want_cpus > free_cpus:
            raise CapacityError(
                f"site {self.config.name}: not enough CPUs for cluster {spec.name}: it needs {want_cpus} "
                f"(frontend and computes), {free_cpus} of {self.config.usable_cpus} are free"
            )
        if want_mem > free_mem:
            raise CapacityError(
                f"site {self.config.name}: not enough memory for cluster {spec.name}: "
                f"it needs {want_mem} MiB, {free_mem} of {self.config.usable_memory_mb} MiB are free"
            )

    # -- planning ------------------------------------------------------------------------
    def plan(self, req: BootRequest, image: Image, public: str | None = None, key: str = "") -> ClusterSpec:
        """The neutral description of a cluster: its nodes and their interfaces, what each is
        told (for ``key``), and the network intent. ``public`` is the frontend's public
        address in bridge mode (None in user mode, where the driver makes SSH reachable)."""
        cluster = names.cluster_name(req.cluster or image.name.lower())
        if req.cpus < 0:
            raise UserInputError(f"NUM_CPUS must be >= 0, got {req.cpus}")
        if req.cpus and image.compute is None:
            raise UserInputError(
                f"image {image.name} has no compute node; use NUM_CPUS=0 for its frontend only"
            )
        net = self.config.network
        private = ipaddress.ip_network(net.private_cidr)
        hosts = list(private.hosts())
        per_node = image.compute.vcpus if image.compute else 1
        counts = [per_node] * (req.cpus // per_node) + ([req.cpus % per_node] if req.cpus % per_node else [])
        if len(counts) > len(hosts) - 10:
            raise CapacityError(f"{len(counts)} compute nodes do not fit the private network {private}")
        fe_name, fe_private = f"{cluster}-frontend", str(hosts[0])

        def private_iface(
            node: str, index: int, ip: str, gateway: str | None, dns: tuple[str, ...]
        ) -> Interface:
            return Interface(
                "private", mac_for(cluster, node, index), f"eth{index}", ip, private.prefixlen, gateway, dns
            )

        if net.mode == "user":
            fe_ifaces = [
                Interface(
                    "public",
                    mac_for(cluster, fe_name, 0),
                    "eth0",
                    NAT_GUEST,
                    NAT_PREFIX,
                    NAT_GATEWAY,
                    (NAT_DNS,),
                )
            ]
            dns: tuple[str, ...] = ()
        else:
            assert net.public is not None and public is not None
            fe_ifaces = [
                Interface(
                    "public",
                    mac_for(cluster, fe_name, 0),
                    "eth0",
                    public,
                    net.public.prefix,
                    net.public.gateway,
                    net.public.dns,
                )
            ]
            dns = net.public.dns
        if counts or net.mode == "bridge":  # a frontend alone needs no private network
            fe_ifaces.append(private_iface(fe_name, 1, fe_private, None, ()))
        ent: list[EntRequest] = []
        for ent_name, cidr in req.add_ifaces:
            configured = next(e for e in net.ent if e.name == ent_name)
            index = len(fe_ifaces)
            fe_ifaces.append(Interface(ent_name, mac_for(cluster, fe_name, index), f"eth{index}"))
            ent.append(EntRequest(ent_name, cidr or configured.cidr))
        nodes = [
            self._node(
                cluster, fe_name, Role.FRONTEND, image.frontend, None, req.memory_frontend_mib, fe_ifaces
            )
        ]
        for i, vcpus in enumerate(counts):
            name = f"{cluster}-compute-{i}"
            iface = private_iface(name, 0, str(hosts[9 + i]), fe_private, dns)
            assert image.compute is not None
            nodes.append(
                self._node(cluster, name, Role.COMPUTE, image.compute, vcpus, req.memory_compute_mib, [iface])
            )
        templates = {"frontend": image.frontend, **({"compute": image.compute} if image.compute else {})}
        spec = ClusterSpec(
            name=cluster,
            image=ImageRef(image.name, image.directory, image.format, templates),
            nodes=tuple(nodes),
            ssh_key=key,
            network=NetworkIntent(
                private_cidr=str(private),
                public_address=public if net.mode == "bridge" else None,
                ent=tuple(ent),
            ),
        )
        return spec.with_documents(context.documents(spec.nodes, key, self._dns()))

    @staticmethod
    def _node(
        cluster: str,
        name: str,
        role: Role,
        tpl: NodeTemplate,
        vcpus: int | None,
        memory: int | None,
        interfaces: list[Interface],
    ) -> NodeSpec:
        return NodeSpec(
            cluster=cluster,
            name=name,
            hostname=name,
            role=role,
            vcpus=vcpus if vcpus is not None else tpl.vcpus,
            memory_mib=memory or tpl.memory_mib,
            interfaces=tuple(interfaces),
            depends_on=f"{cluster}-frontend" if role is Role.COMPUTE and tpl.wait_for else None,
            wait_seconds=tpl.wait_seconds,
        )

    def _dns(self) -> tuple[str, ...]:
        net = self.config.network
        if net.mode == "bridge" and net.public is not None:
            return net.public.dns
        return net.dns or (NAT_DNS,)

    # -- boot ----------------------------------------------------------------------------
    def boot(self, req: BootRequest) -> BootResult:
        names.image_name(req.image)
        if req.cluster:
            names.cluster_name(req.cluster)
        try:
            text = sys.stdin.read(16384) if str(req.key_path) == "-" else req.key_path.read_text()
            key = normalize_public_key(text, str(req.key_path))
        except OSError as exc:
            raise UserInputError(f"key={req.key_path}: cannot read the public key: {exc.strerror}") from None
        for ent_name, _cidr in req.add_ifaces:
            if not (req.enable_ent and self.config.ent_enabled):
                raise UserInputError(
                    f"add-iface={ent_name}: needs enable-ent=true on a site with ENT enabled"
                )
            if self.config.network.mode != "bridge":
                raise UserInputError("ENT interfaces need the site's bridge network mode")
            if ent_name not in {e.name for e in self.config.network.ent}:
                raise UserInputError(f"add-iface={ent_name}: no such ENT network at site {self.config.name}")
        if req.enable_ent and not self.config.ent_enabled:
            raise UserInputError(f"enable-ent=true: site {self.config.name} has no ENT networks")
        image = self.repository.image(req.image)
        cluster = req.cluster or image.name.lower()
        names.cluster_name(cluster)
        with self._cluster_lock(cluster):
            existing = self.driver.list_nodes(cluster)
            if existing:
                if any(n.state in ACTIVE for n in existing):
                    log.info("cluster %s already exists; boot is a no-op", cluster)
                    return BootResult(cluster, "already booted", tuple(existing))
                raise UserInputError(
                    f"cluster {cluster} exists but is stopped: run `pragma clean {cluster}` first"
                )
            # Capacity is the whole site's: one boot at a time checks it and claims what it
            # needs (a claim counts until its nodes exist); the boots themselves then run
            # side by side, up to `[site] max_boots` at once.
            with self._cluster_lock("_site"):  # not a valid cluster name: no clash
                # Plan with a placeholder address: what the driver cannot do and capacity
                # are checked before anything is held.
                draft = self.plan(req, image, "0.0.0.0" if self.config.network.mode == "bridge" else None)
                self.driver.validate(draft)
                self._check_capacity(draft)
                claim = self._claim(draft)
            try:
                with self._boot_slot(cluster):
                    t0 = time.monotonic()
                    return self._boot_locked(req, image, cluster, key, t0)
            except BaseException:
                log.warning("cluster %s: boot failed; removing everything it staged", cluster)
                with contextlib.suppress(Exception):
                    self._clean_locked(cluster)
                raise
            finally:
                claim.unlink(missing_ok=True)

    def _boot_locked(self, req: BootRequest, image: Image, cluster: str, key: str, t0: float) -> BootResult:
        public = None
        if self.config.network.mode == "bridge":
            (public,) = self.public_pool().allocate(cluster, 1)
        spec = self.plan(req, image, public, key)
        staged: list[float] = []

        def on_staged() -> None:
            staged.append(time.monotonic() - t0)
            log.info("cluster %s: staged %d nodes in %.2f s; deploying", cluster, len(spec.nodes), staged[0])

        nodes = self.driver.create_cluster(spec, timeout=self.config.boot_timeout_s, on_staged=on_staged)
        return BootResult(
            cluster,
            "booted",
            tuple(nodes),
            staging_seconds=staged[0] if staged else None,
            boot_seconds=time.monotonic() - t0,
        )

    # -- list / shutdown / clean -------------------------------------------------------------
    def list_cluster(self, cluster: str | None = None) -> list[NodeInfo]:
        if cluster is not None:
            names.cluster_name(cluster)
        return list(self.driver.list_nodes(cluster))

    def shutdown(self, cluster: str) -> ActionResult:
        names.cluster_name(cluster)
        with self._cluster_lock(cluster):
            stopped = self.driver.shutdown(cluster)
        message = f"stopped {stopped} nodes" if stopped else "nothing was running"
        return ActionResult(cluster, message, {"stopped": stopped})

    def clean(self, cluster: str) -> ActionResult:
        names.cluster_name(cluster)
        with self._cluster_lock(cluster):
            return self._clean_locked(cluster)

    def _clean_locked(self, cluster: str) -> ActionResult:
        stopped = self.driver.shutdown(cluster)
        cleaned = self.driver.clean(cluster)
        freed = self.public_pool().release(cluster) if self.config.network.mode == "bridge" else []
        released = [*freed, *cleaned.released]
        nothing = not (stopped or cleaned.removed_nodes or cleaned.removed_files or released)
        return ActionResult(
            cluster,
            "nothing to clean" if nothing else "cleaned",
            {
                "stopped": stopped,
                "removed_nodes": cleaned.removed_nodes,
                "removed_files": cleaned.removed_files,
                "released": released,
            },
        )

    # -- check -----------------------------------------------------------------------------
    def check(self) -> CheckReport:
        problems: list[str] = []
        health = self.driver.check()
        if not health.reachable:
            problems.append(f"driver: {health.message}")
        images: list[str] = []
        try:
            images = sorted(self.repository.entries())
        except PccError as exc:
            problems.append(f"repository: {exc}")
        used_cpus = used_mem = 0
        if health.reachable:
            try:
                used_cpus, used_mem = self.usage()
            except PccError as exc:
                problems.append(f"driver: {exc}")
        cfg = self.config
        return CheckReport(
            ok=not problems,
            problems=tuple(problems),
            site=cfg.name,
            pragma_version=__version__,
            deployment_type=cfg.deployment_type,
            ent_enabled=cfg.ent_enabled,
            driver={
                "name": cfg.driver,
                "reachable": health.reachable,
                "message": health.message,
                **dict(health.details),
            },
            repository_path=str(cfg.repository),
            images=tuple(images) if images or not problems else None,
            cpus=Capacity(cfg.cpus, cfg.reserve_cpus, used_cpus, cfg.usable_cpus - used_cpus),
            memory_mb=Capacity(
                cfg.memory_mb, cfg.reserve_memory_mb, used_mem, cfg.usable_memory_mb - used_mem
            ),
            network_mode=cfg.network.mode,
            staging_path=str(cfg.staging),
        )
