"""The one interface every VM-provisioner back-end implements, and the neutral values it
speaks in: the site plans a :class:`ClusterSpec` (nodes, addresses, contextualization
texts, network intent) and a driver turns it into running nodes its own way.

Verbs follow pragma_boot's driver scripts (create, list, shutdown, clean) plus ``check``.
Back-end-only extras carry an ``ex_`` prefix instead of widening this class; what a
back-end can do beyond the minimum is announced in :attr:`Driver.features`. Each driver
maps its native states onto :class:`~pcc.common.protocol.NodeState` through a table read
with ``.get(native, NodeState.UNKNOWN)``, so no back-end string leaks out.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from pcc.common.errors import UnsupportedError
from pcc.common.protocol import NodeInfo, NodeState, Role
from pcc.common.tomlcfg import TomlReader
from pcc.site.config import NetworkConfig

__all__ = [
    "FEATURE_ENT",
    "FEATURE_PUBLIC_ADDRESS",
    "FEATURE_VOLUMES",
    "CleanResult",
    "ClusterSpec",
    "Driver",
    "DriverHealth",
    "DriverSettings",
    "EntRequest",
    "ImageRef",
    "Interface",
    "NetworkIntent",
    "NodeDocuments",
    "NodeInfo",
    "NodeSpec",
    "NodeState",
    "Role",
    "SiteContext",
]

# Capabilities a driver may announce in ``features`` (Libcloud's ``features`` idea).
FEATURE_ENT = "ent"  # extra interfaces on ENT networks
FEATURE_VOLUMES = "volumes"  # image disks named by storage pool and volume
FEATURE_PUBLIC_ADDRESS = "public_address"  # frontends get a site-allocated public address


# -- the neutral description of a cluster ---------------------------------------------------
@dataclass(frozen=True)
class ImageRef:
    """The repository image a cluster boots. ``templates`` holds, per role ("frontend",
    "compute"), whatever the repository entry describes; the site never looks inside, the
    driver interprets it (and rejects what it cannot use)."""

    name: str
    directory: Path  # where the entry's relative paths resolve
    format: str = ""
    templates: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Interface:
    """One network interface of a node, as its guest configures it. ``network`` is
    "public", "private" or the name of an ENT network; ``ip`` None means unaddressed."""

    network: str
    mac: str
    guest_name: str = "eth0"
    ip: str | None = None
    prefix: int | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    """One node: its size, its interfaces and what it waits for before starting."""

    cluster: str
    name: str
    hostname: str
    role: Role
    vcpus: int
    memory_mib: int
    interfaces: tuple[Interface, ...]
    depends_on: str | None = None  # a node that must be running first (boot_dependency)
    wait_seconds: float = 0.0  # and how long after it started

    @property
    def private_ip(self) -> str | None:
        return next((i.ip for i in self.interfaces if i.network == "private"), None)

    @property
    def mac(self) -> str:
        """The MAC of the node's first interface (its public one on a frontend)."""
        return self.interfaces[0].mac if self.interfaces else ""


@dataclass(frozen=True)
class NodeDocuments:
    """What a node is told about itself and its cluster, as text."""

    vc_out: str  # pragma_boot's vc-out.xml
    user_data: str  # cloud-init #cloud-config
    meta_data: str
    network_config: str  # netplan v2


@dataclass(frozen=True)
class EntRequest:
    """An ENT network the frontend wants an interface on."""

    name: str
    cidr: str


@dataclass(frozen=True)
class NetworkIntent:
    """What the cluster's networks should be, not how a back-end attaches them."""

    private_cidr: str
    # The frontend's site-allocated public address; None: it has none of its own and the
    # driver makes its SSH reachable from the site host (e.g. a forwarded port).
    public_address: str | None = None
    ent: tuple[EntRequest, ...] = ()


@dataclass(frozen=True)
class ClusterSpec:
    """Everything a driver needs to create a cluster, in no back-end's terms."""

    name: str
    image: ImageRef
    nodes: tuple[NodeSpec, ...]
    ssh_key: str
    network: NetworkIntent
    documents: Mapping[str, NodeDocuments] = field(default_factory=dict)  # by node name

    @property
    def frontend(self) -> NodeSpec:
        return next(n for n in self.nodes if n.role is Role.FRONTEND)

    @property
    def computes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role is Role.COMPUTE)

    def with_documents(self, documents: Mapping[str, NodeDocuments]) -> ClusterSpec:
        return dataclasses.replace(self, documents=dict(documents))


# -- what a driver is given and gives back --------------------------------------------------
@dataclass(frozen=True)
class SiteContext:
    """What a driver may know of the site running it."""

    name: str
    staging: Path  # a directory the driver may keep its files and bookkeeping under
    network: NetworkConfig  # the site's [network] table, parsed and validated
    config_path: Path | None = None


@dataclass(frozen=True)
class DriverSettings:
    """A driver's ``[driver.<name>]`` table. Subclasses add fields and read them in
    :meth:`from_toml`; errors name ``file: [driver.<name>] key``."""

    @classmethod
    def from_toml(cls, reader: TomlReader) -> Self:
        cls.reject_unknown(reader)
        return cls()

    @classmethod
    def reject_unknown(cls, reader: TomlReader) -> None:
        """A misspelt setting is an error, not a silently ignored line."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in reader.data:
            if key not in known:
                hint = f"known: {', '.join(sorted(known))}" if known else "this driver has no settings"
                raise reader.fail(key, f"unknown setting ({hint})")


@dataclass(frozen=True)
class DriverHealth:
    reachable: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CleanResult:
    """What :meth:`Driver.clean` removed (zeros and empties: there was nothing)."""

    removed_nodes: int = 0
    removed_files: bool = False
    released: tuple[str, ...] = ()  # back-end slots given back (e.g. forwarded ports)


class Driver(abc.ABC):
    """A VM provisioner. Methods raise :class:`pcc.common.errors.PccError` subclasses on
    failure; ``shutdown`` and ``clean`` are idempotent (a cluster that never existed is
    success) and ``clean`` removes everything ``create_cluster`` made, even half of it."""

    name: ClassVar[str]
    features: ClassVar[frozenset[str]] = frozenset()
    settings_type: ClassVar[type[DriverSettings]] = DriverSettings

    def __init__(self, settings: DriverSettings, site: SiteContext) -> None:
        self.settings = settings
        self.site = site

    @classmethod
    def from_toml(cls, reader: TomlReader, site: SiteContext) -> Self:
        """The driver configured by its ``[driver.<name>]`` table."""
        return cls(cls.settings_type.from_toml(reader), site)

    def validate(self, spec: ClusterSpec) -> None:
        """Refuse, before anything is held, what this driver cannot do.

        Raises
        ------
        UnsupportedError
            The spec asks for a feature this driver does not announce.
        """
        if spec.network.ent and FEATURE_ENT not in self.features:
            names = ", ".join(e.name for e in spec.network.ent)
            raise UnsupportedError(
                f"ENT networks ({names}) are not supported at this site (driver {self.name})"
            )
        if spec.network.public_address is not None and FEATURE_PUBLIC_ADDRESS not in self.features:
            raise UnsupportedError(
                f"public addresses for frontends are not supported at this site (driver {self.name})"
            )

    @abc.abstractmethod
    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        """Create and start every node of ``spec`` (computes after what they depend on is
        running) and return them as the back-end reports them. ``on_staged`` is called once
        disks and seeds are ready and nodes are about to start (for timing)."""

    @abc.abstractmethod
    def list_nodes(self, cluster: str | None = None) -> Sequence[NodeInfo]:
        """Nodes of one cluster (or of all clusters this driver manages), read from the back-end."""

    @abc.abstractmethod
    def shutdown(self, cluster: str) -> int:
        """Stop the cluster's nodes; returns how many were running."""

    @abc.abstractmethod
    def clean(self, cluster: str) -> CleanResult:
        """Stop and forget the cluster's nodes and remove everything staged for them."""

    @abc.abstractmethod
    def check(self) -> DriverHealth:
        """Is the back-end reachable and usable?"""
