"""A small in-tree driver for unit tests of the orchestration: it keeps its "nodes" in a
dict, so tests see what the site asked of a back-end without booting anything."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pcc.common.errors import DriverError
from pcc.drivers.base import (
    CleanResult,
    ClusterSpec,
    Driver,
    DriverHealth,
    DriverSettings,
    NodeInfo,
    NodeState,
    SiteContext,
)
from pcc.site.config import SiteConfig


class FakeDriver(Driver):
    name = "fake"
    features = frozenset()

    def __init__(self, settings: DriverSettings, site: SiteContext, fail_create: bool = False) -> None:
        super().__init__(settings, site)
        self.fail_create = fail_create
        self.created: list[ClusterSpec] = []
        self.cleaned: list[str] = []
        self.nodes: dict[str, list[NodeInfo]] = {}

    @classmethod
    def without_features(cls, cfg: SiteConfig, fail_create: bool = False) -> FakeDriver:
        return cls(DriverSettings(), SiteContext(cfg.name, cfg.staging, cfg.network, cfg.path), fail_create)

    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        self.validate(spec)
        self.created.append(spec)
        self.nodes[spec.name] = [
            NodeInfo(spec.name, n.name, n.role, NodeState.RUNNING, n.vcpus, n.memory_mib, n.private_ip)
            for n in spec.nodes
        ]
        if on_staged is not None:
            on_staged()
        if self.fail_create:
            raise DriverError(f"cluster {spec.name}: the fake back-end failed half-way")
        return self.nodes[spec.name]

    def list_nodes(self, cluster: str | None = None) -> Sequence[NodeInfo]:
        return [n for name, nodes in self.nodes.items() if cluster in (None, name) for n in nodes]

    def shutdown(self, cluster: str) -> int:
        nodes = self.nodes.get(cluster, [])
        running = sum(1 for n in nodes if n.state is NodeState.RUNNING)
        self.nodes[cluster] = [
            NodeInfo(n.cluster, n.name, n.role, NodeState.STOPPED, n.vcpus, n.memory_mib) for n in nodes
        ]
        if not self.nodes[cluster]:
            del self.nodes[cluster]
        return running

    def clean(self, cluster: str) -> CleanResult:
        self.cleaned.append(cluster)
        return CleanResult(removed_nodes=len(self.nodes.pop(cluster, [])))

    def check(self) -> DriverHealth:
        return DriverHealth(True, "fake")
