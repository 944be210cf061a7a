"""The one interface every VM-provisioner back-end implements, and the values it speaks in.

Verbs follow pragma_boot's driver scripts (allocate, deploy, list, shutdown, clean) plus
``check``. Back-end-only extras carry an ``ex_`` prefix instead of widening this class.
Each driver maps its native states onto :class:`NodeState` through a table read with
``.get(native, NodeState.UNKNOWN)``, so no back-end string leaks out.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class NodeState(enum.StrEnum):
    PENDING = "pending"
    BOOTING = "booting"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"
    UNKNOWN = "unknown"


class Role(enum.StrEnum):
    FRONTEND = "frontend"
    COMPUTE = "compute"


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
    """One network interface in the plan. ``network`` is "public", "private" or an ENT name."""

    network: str
    mac: str
    ip: str | None = None
    prefix: int | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    guest_name: str = "eth0"
    # How the driver attaches it: "user" (NAT with host port forward), "bridge", "udp".
    attach: str = "user"
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodePlan:
    """Everything a driver needs to create one node."""

    cluster: str
    name: str
    role: Role
    vcpus: int
    memory_mib: int
    disks: tuple[StagedDisk, ...]
    seed: Path
    nics: tuple[Nic, ...]
    domain_xml: str  # the image's own <domain> (libvirt) description, as given
    console_log: Path
    image_dir: Path  # where the image's relative paths (kernel, initrd) resolve
    depends_on: str | None = None  # node that must be running first (boot_dependency)
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    image: str
    nodes: tuple[NodePlan, ...]
    public_address: str | None = None
    ssh_port: int = 22

    @property
    def frontend(self) -> NodePlan:
        return next(n for n in self.nodes if n.role is Role.FRONTEND)


@dataclass(frozen=True)
class NodeStatus:
    """A node as the back-end reports it now (never from the site tool's own bookkeeping)."""

    cluster: str
    name: str
    role: Role
    state: NodeState
    vcpus: int
    memory_mib: int
    private_ip: str | None = None
    public_ip: str | None = None
    ssh_port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "name": self.name,
            "role": self.role.value,
            "state": self.state.value,
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "private_ip": self.private_ip,
            "public_ip": self.public_ip,
            "ssh_port": self.ssh_port,
        }


@dataclass(frozen=True)
class DriverHealth:
    reachable: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


class Driver(abc.ABC):
    """A VM provisioner. Methods raise :class:`pcc.common.errors.PccError` subclasses on failure;
    ``shutdown`` and ``clean`` are idempotent (a cluster that never existed is success)."""

    name: ClassVar[str]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def allocate(self, plan: ClusterPlan) -> ClusterPlan:
        """Reserve back-end resources the plan needs (e.g. forwarded ports); may refine it."""
        return plan

    @abc.abstractmethod
    def deploy(self, plan: ClusterPlan, timeout: float) -> Sequence[NodeStatus]:
        """Create and start every node; computes start after what they depend on is up."""

    @abc.abstractmethod
    def list_nodes(self, cluster: str | None = None) -> Sequence[NodeStatus]:
        """Nodes of one cluster (or of all clusters this driver manages), read from the back-end."""

    @abc.abstractmethod
    def shutdown(self, cluster: str) -> int:
        """Stop the cluster's nodes; returns how many were running."""

    @abc.abstractmethod
    def clean(self, cluster: str) -> int:
        """Forget the cluster's nodes in the back-end; returns how many definitions were removed."""

    @abc.abstractmethod
    def check(self) -> DriverHealth:
        """Is the back-end reachable and usable?"""
