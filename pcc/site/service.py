"""What the site tool does, independent of how it is asked: plan a cluster, stage it,
contextualize it, hand it to the driver, and undo all of it on failure or on request."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcc import __version__
from pcc.common import names
from pcc.common.errors import CapacityError, ConfigError, DriverError, PccError, UserInputError
from pcc.common.keys import normalize_public_key
from pcc.common.locks import file_lock
from pcc.drivers import UnknownDriver, load_driver
from pcc.drivers.base import ClusterPlan, Driver, Nic, NodePlan, NodeState, NodeStatus, Role, StagedDisk
from pcc.site import context, hub
from pcc.site.addresses import AddressPool
from pcc.site.config import SiteConfig
from pcc.site.repository import Image, Repository
from pcc.site.staging import create_overlay

log = logging.getLogger(__name__)

# QEMU user networking (slirp) addresses: guest, gateway (the host), DNS.
SLIRP_GUEST, SLIRP_PREFIX, SLIRP_GATEWAY, SLIRP_DNS = "10.0.2.15", 24, "10.0.2.2", "10.0.2.3"
LOOPBACK = "127.0.0.1"
ACTIVE = (NodeState.PENDING, NodeState.BOOTING, NodeState.RUNNING)


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


def _port_free(address: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


class SiteService:
    def __init__(self, config: SiteConfig, driver: Driver | None = None) -> None:
        self.config = config
        self._driver = driver
        self.repository = Repository(config.repository)

    # -- parts ---------------------------------------------------------------------------
    @property
    def driver(self) -> Driver:
        if self._driver is None:
            try:
                self._driver = load_driver(
                    self.config.driver,
                    {
                        **self.config.driver_settings,
                        "staging": str(self.config.staging),
                    },
                )
            except UnknownDriver as exc:
                raise ConfigError(f"{self.config.path}: [driver] name: {exc}") from None
        return self._driver

    def public_pool(self) -> AddressPool:
        net = self.config.network
        if net.mode == "user":
            lo, hi = net.forward_ports
            slots = [str(p) for p in range(lo, hi + 1)]
        else:
            assert net.public is not None
            slots = list(net.public.addresses)
        return AddressPool(self.config.staging / "allocations.json", slots)

    def link_pool(self) -> AddressPool:
        """Loopback UDP ports for user-mode private networks (hub and one per node)."""
        lo, hi = self.config.network.link_ports
        return AddressPool(self.config.staging / "links.json", [str(p) for p in range(lo, hi + 1)])

    def cluster_dir(self, cluster: str) -> Path:
        return self.config.staging / "clusters" / cluster

    @contextlib.contextmanager
    def _cluster_lock(self, cluster: str) -> Iterator[None]:
        with file_lock(self.config.staging / "locks" / f"{cluster}.lock"):
            yield

    # -- repository ----------------------------------------------------------------------
    def list_repository(self) -> list[dict[str, Any]]:
        out = []
        for image in self.repository.images():
            row: dict[str, Any] = {
                "name": image.name,
                "description": image.description,
                "format": image.format,
            }
            for role, tpl in (("frontend", image.frontend), ("compute", image.compute)):
                if tpl is None:
                    continue
                row[role] = {
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
            out.append(row)
        return out

    # -- capacity ------------------------------------------------------------------------
    def usage(self, nodes: Sequence[NodeStatus] | None = None) -> tuple[int, int]:
        nodes = self.driver.list_nodes() if nodes is None else nodes
        active = [n for n in nodes if n.state in ACTIVE]
        return sum(n.vcpus for n in active), sum(n.memory_mib for n in active)

    def _check_capacity(self, plan: ClusterPlan) -> None:
        used_cpus, used_mem = self.usage()
        want_cpus = sum(n.vcpus for n in plan.nodes)
        want_mem = sum(n.memory_mib for n in plan.nodes)
        free_cpus = self.config.usable_cpus - used_cpus
        free_mem = self.config.usable_memory_mb - used_mem
        if want_cpus > free_cpus:
            raise CapacityError(
                f"site {self.config.name}: not enough CPUs for cluster {plan.name}: it needs {want_cpus} "
                f"(frontend and computes), {free_cpus} of {self.config.usable_cpus} are free"
            )
        if want_mem > free_mem:
            raise CapacityError(
                f"site {self.config.name}: not enough memory for cluster {plan.name}: "
                f"it needs {want_mem} MiB, {free_mem} of {self.config.usable_memory_mb} MiB are free"
            )

    # -- planning ------------------------------------------------------------------------
    def plan(
        self, req: BootRequest, image: Image, public: str | None, links: Sequence[int] = ()
    ) -> ClusterPlan:
        """Nodes, disks, seeds and NICs of a cluster. ``public`` is the frontend's public
        address (bridge mode) or forwarded port (user mode); ``links`` are the loopback UDP
        ports of the user-mode private network (the hub's first, then one per node)."""
        cluster = names.cluster_name(req.cluster or image.name.lower())
        cdir = self.cluster_dir(cluster)
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
        link_ports = list(links) or [0] * (len(counts) + 2)
        fe_name, fe_private = f"{cluster}-frontend", str(hosts[0])

        def private_nic(
            node: str, index: int, ip: str, gateway: str | None, dns: tuple[str, ...], link: int
        ) -> Nic:
            if net.mode == "user":  # a port on the cluster's loopback UDP hub
                attach: str = "udp"
                source: dict[str, Any] = {
                    "address": "127.0.0.1",
                    "port": link_ports[0],
                    "local_port": link_ports[link],
                }
            else:
                attach, source = "bridge", {"bridge": net.private_bridge}
            return Nic(
                "private",
                mac_for(cluster, node, index),
                ip,
                private.prefixlen,
                gateway,
                dns,
                f"eth{index}",
                attach,
                source,
            )

        if net.mode == "user":
            fe_nics = [
                Nic(
                    "public",
                    mac_for(cluster, fe_name, 0),
                    SLIRP_GUEST,
                    SLIRP_PREFIX,
                    SLIRP_GATEWAY,
                    (SLIRP_DNS,),
                    "eth0",
                    "user",
                    {"forward_address": net.forward_address, "forward_port": int(public or 0)},
                )
            ]
            dns: tuple[str, ...] = ()
        else:
            assert net.public is not None and public is not None
            fe_nics = [
                Nic(
                    "public",
                    mac_for(cluster, fe_name, 0),
                    public,
                    net.public.prefix,
                    net.public.gateway,
                    net.public.dns,
                    "eth0",
                    "bridge",
                    {"bridge": net.public.bridge},
                )
            ]
            dns = net.public.dns
        if counts or net.mode == "bridge":  # a frontend alone needs no private network
            fe_nics.append(private_nic(fe_name, 1, fe_private, None, (), 1))
        for ent_name, cidr in req.add_ifaces:
            ent = next(e for e in net.ent if e.name == ent_name)
            index = len(fe_nics)
            fe_nics.append(
                Nic(
                    ent_name,
                    mac_for(cluster, fe_name, index),
                    guest_name=f"eth{index}",
                    attach="bridge",
                    source={"bridge": ent.bridge, "cidr": cidr or ent.cidr},
                )
            )
        nodes = [
            self._node(
                cluster,
                cdir,
                fe_name,
                Role.FRONTEND,
                image,
                image.frontend.vcpus,
                req.memory_frontend_mib,
                tuple(fe_nics),
            )
        ]
        for i, vcpus in enumerate(counts):
            name = f"{cluster}-compute-{i}"
            nic = private_nic(name, 0, str(hosts[9 + i]), fe_private, dns, 2 + i)
            nodes.append(
                self._node(cluster, cdir, name, Role.COMPUTE, image, vcpus, req.memory_compute_mib, (nic,))
            )
        return ClusterPlan(
            cluster,
            image.name,
            tuple(nodes),
            public_address=net.forward_address if net.mode == "user" else public,
            ssh_port=int(public) if net.mode == "user" and public else 22,
        )

    def _node(
        self,
        cluster: str,
        cdir: Path,
        name: str,
        role: Role,
        image: Image,
        vcpus: int,
        memory: int | None,
        nics: tuple[Nic, ...],
    ) -> NodePlan:
        tpl = image.frontend if role is Role.FRONTEND else image.compute
        assert tpl is not None
        disks = tuple(
            StagedDisk(path=cdir / f"{name}-{d.target}.qcow2", format="qcow2", target=d.target, bus=d.bus)
            for d in tpl.disks
        )
        return NodePlan(
            cluster=cluster,
            name=name,
            role=role,
            vcpus=vcpus,
            memory_mib=memory or tpl.memory_mib,
            disks=disks,
            seed=cdir / f"{name}-seed.iso",
            nics=nics,
            domain_xml=tpl.domain_xml,
            console_log=cdir / f"{name}-console.log",
            image_dir=image.directory,
            depends_on=f"{cluster}-frontend" if role is Role.COMPUTE and tpl.wait_for else None,
            wait_seconds=tpl.wait_seconds,
        )

    # -- boot ----------------------------------------------------------------------------
    def boot(self, req: BootRequest) -> dict[str, Any]:
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
                    return self._summary(cluster, existing, "already booted")
                raise UserInputError(
                    f"cluster {cluster} exists but is stopped: run `pragma clean {cluster}` first"
                )
            # Capacity is the whole site's: one boot at a time checks it and starts its nodes.
            with self._cluster_lock("_site"):  # not a valid cluster name: no clash
                # Plan with a placeholder address: capacity is checked before anything is held.
                self._check_capacity(
                    self.plan(req, image, "0" if self.config.network.mode == "user" else "0.0.0.0")
                )
                t0 = time.monotonic()
                try:
                    return self._boot_locked(req, image, cluster, key, t0)
                except BaseException:
                    log.warning("cluster %s: boot failed; removing everything it staged", cluster)
                    with contextlib.suppress(Exception):
                        self._clean_locked(cluster)
                    raise

    def _boot_locked(
        self, req: BootRequest, image: Image, cluster: str, key: str, t0: float
    ) -> dict[str, Any]:
        net = self.config.network
        usable = (lambda slot: _port_free(net.forward_address, int(slot))) if net.mode == "user" else None
        (public,) = self.public_pool().allocate(cluster, 1, usable)
        links: list[int] = []
        draft = self.plan(req, image, public)
        if net.mode == "user" and len(draft.nodes) > 1:
            pool = self.link_pool()
            links = [
                int(p)
                for p in pool.allocate(
                    cluster,
                    len(draft.nodes) + 1,
                    lambda slot: _port_free(LOOPBACK, int(slot), socket.SOCK_DGRAM),
                )
            ]
        plan = self.driver.allocate(self.plan(req, image, public, links))
        cdir = self.cluster_dir(cluster)
        cdir.mkdir(parents=True, exist_ok=True)
        if links:
            hub.start(links[0], cdir / "hub.pid")
        tpls = {Role.FRONTEND: image.frontend, Role.COMPUTE: image.compute}
        for node in plan.nodes:
            tpl = tpls[node.role]
            assert tpl is not None
            for staged, source in zip(node.disks, tpl.disks, strict=True):
                base = source.path if source.kind == "file" else self._volume_path(source.pool, source.volume)
                assert base is not None
                create_overlay(base, source.format, staged.path, staged.target, staged.bus)
        fqdn = f"{plan.frontend.name}.local"
        for node in plan.nodes:
            if node.role is Role.FRONTEND:
                vc_out = context.vc_out_frontend(plan, key, self._dns(), fqdn)
            else:
                vc_out = context.vc_out_compute(plan, node, key, self._dns(), fqdn)
            (cdir / f"{node.name}-vc-out.xml").write_text(vc_out)
            context.write_seed(
                cdir,
                {
                    "meta-data": context.meta_data(node),
                    "user-data": context.user_data(node, key, vc_out),
                    "network-config": context.network_config(node),
                    "vc-out.xml": vc_out,
                },
                node.seed,
            )
        staged_s = time.monotonic() - t0
        log.info("cluster %s: staged %d nodes in %.2f s; deploying", cluster, len(plan.nodes), staged_s)
        statuses = self.driver.deploy(plan, timeout=self.config.boot_timeout_s)
        summary = self._summary(cluster, statuses, "booted")
        summary["staging_seconds"] = round(staged_s, 3)
        summary["boot_seconds"] = round(time.monotonic() - t0, 3)
        return summary

    def _dns(self) -> tuple[str, ...]:
        net = self.config.network
        if net.mode == "bridge" and net.public is not None:
            return net.public.dns
        return net.dns or (SLIRP_DNS,)

    def _volume_path(self, pool: str | None, volume: str | None) -> Path:
        resolver = getattr(self.driver, "ex_volume_path", None)
        if resolver is None:
            raise DriverError(f"driver {self.config.driver} cannot resolve volume disks ({pool}/{volume})")
        return Path(resolver(pool, volume))

    def _summary(self, cluster: str, nodes: Sequence[NodeStatus], message: str) -> dict[str, Any]:
        fe = next((n for n in nodes if n.role is Role.FRONTEND), None)
        return {
            "cluster": cluster,
            "message": message,
            "frontend": fe.name if fe else None,
            "public_ip": fe.public_ip if fe else None,
            "ssh_port": fe.ssh_port if fe else None,
            "nodes": [n.as_dict() for n in nodes],
        }

    # -- list / shutdown / clean -------------------------------------------------------------
    def list_cluster(self, cluster: str | None = None) -> list[NodeStatus]:
        if cluster is not None:
            names.cluster_name(cluster)
        return list(self.driver.list_nodes(cluster))

    def shutdown(self, cluster: str) -> dict[str, Any]:
        names.cluster_name(cluster)
        with self._cluster_lock(cluster):
            stopped = self.driver.shutdown(cluster)
        message = f"stopped {stopped} nodes" if stopped else "nothing was running"
        return {"cluster": cluster, "stopped": stopped, "message": message}

    def clean(self, cluster: str) -> dict[str, Any]:
        names.cluster_name(cluster)
        with self._cluster_lock(cluster):
            return self._clean_locked(cluster)

    def _clean_locked(self, cluster: str) -> dict[str, Any]:
        stopped = self.driver.shutdown(cluster)
        removed = self.driver.clean(cluster)
        cdir = self.cluster_dir(cluster)
        had_files = cdir.exists()
        hub.stop(cdir / "hub.pid")
        shutil.rmtree(cdir, ignore_errors=True)
        freed = self.public_pool().release(cluster)
        if self.config.network.mode == "user":
            self.link_pool().release(cluster)
        nothing = not (stopped or removed or had_files or freed)
        return {
            "cluster": cluster,
            "stopped": stopped,
            "removed_nodes": removed,
            "removed_files": had_files,
            "released": freed,
            "message": "nothing to clean" if nothing else "cleaned",
        }

    # -- check -----------------------------------------------------------------------------
    def check(self) -> dict[str, Any]:
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
        return {
            "ok": not problems,
            "problems": problems,
            "site": cfg.name,
            "pragma_version": __version__,
            "deployment_type": cfg.deployment_type,
            "ent_enabled": cfg.ent_enabled,
            "driver": {
                "name": cfg.driver,
                "reachable": health.reachable,
                "message": health.message,
                **dict(health.details),
            },
            "repository": {
                "path": str(cfg.repository),
                "readable": bool(images) or not problems,
                "images": images,
            },
            "cpus": {
                "total": cfg.cpus,
                "reserved": cfg.reserve_cpus,
                "used": used_cpus,
                "free": cfg.usable_cpus - used_cpus,
            },
            "memory_mb": {
                "total": cfg.memory_mb,
                "reserved": cfg.reserve_memory_mb,
                "used": used_mem,
                "free": cfg.usable_memory_mb - used_mem,
            },
            "network_mode": cfg.network.mode,
        }
