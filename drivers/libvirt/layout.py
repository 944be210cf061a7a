"""Where a cluster lives on the libvirt host: one directory per cluster under the staging
path holding each node's overlays, seed, vc-out.xml and console log, and the libvirt plan
of each domain made from the neutral spec and the image's own ``<domain>``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pcc.common.errors import DriverError
from pcc.drivers.base import ClusterSpec, SiteContext
from pcc.drivers.libvirt.domain import ClusterLayout, DomainPlan, StagedDisk
from pcc.drivers.libvirt.network import attach

if TYPE_CHECKING:
    from pcc.site.repository import NodeTemplate


def cluster_dir(staging: Path, cluster: str) -> Path:
    return staging / "clusters" / cluster


def template(spec: ClusterSpec, role: str) -> NodeTemplate:
    """The repository's description of a role (a ``vc-in.xml`` ``<domain>`` and its disks)."""
    tpl = spec.image.templates.get(role)
    if tpl is None or not hasattr(tpl, "domain_xml") or not hasattr(tpl, "disks"):
        raise DriverError(f"image {spec.image.name}: no libvirt <domain> for its {role} nodes")
    return tpl


def plan_cluster(
    spec: ClusterSpec, site: SiteContext, forward_port: int | None = None, links: Sequence[int] = ()
) -> ClusterLayout:
    """The domains of a cluster. ``forward_port`` is the frontend's forwarded SSH port (user
    mode); ``links`` the cluster's hub ports (user mode, more than one node)."""
    cdir = cluster_dir(site.staging, spec.name)
    nodes = []
    for index, node in enumerate(spec.nodes):
        tpl = template(spec, node.role.value)
        disks = tuple(
            StagedDisk(
                path=cdir / f"{node.name}-{d.target}.qcow2", format="qcow2", target=d.target, bus=d.bus
            )
            for d in tpl.disks
        )
        nodes.append(
            DomainPlan(
                cluster=spec.name,
                name=node.name,
                role=node.role,
                vcpus=node.vcpus,
                memory_mib=node.memory_mib,
                disks=disks,
                seed=cdir / f"{node.name}-seed.iso",
                nics=attach(node, index, site.network, spec.network.ent, forward_port, links),
                domain_xml=tpl.domain_xml,
                console_log=cdir / f"{node.name}-console.log",
                image_dir=spec.image.directory,
                depends_on=node.depends_on,
                wait_seconds=node.wait_seconds,
            )
        )
    user = site.network.mode == "user"
    return ClusterLayout(
        spec.name,
        cdir,
        tuple(nodes),
        public_address=site.network.forward_address if user else spec.network.public_address,
        ssh_port=forward_port if user and forward_port else 22,
        links=tuple(links),
    )
