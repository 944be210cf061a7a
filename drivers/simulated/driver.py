"""The simulated driver: a site that boots nothing, for tests and capacity planning.

It is a driver like the others (``[driver] name = "simulated"`` in the site TOML), so that
benches and tests can run thousands of reservations through the real pool, the real sshd
and the real site tool `pragma` without a hypervisor or a cloud. It is a test and
capacity-planning aid only; the demo never uses it.

* **Back-end.** A JSON state file under the site's staging directory (``state_file``,
  default ``<staging>/simulated.json``; see :mod:`.store`), changed atomically under a file
  lock, so several `pragma` processes may share it. ``list_nodes`` reads only that file:
  thousands of clusters list in milliseconds.
* **Boot.** ``create_cluster`` records the nodes with the spec's names, roles, CPUs, memory
  and private addresses, and the times they start and are running: a node starts when it
  is created (a compute that depends on the frontend: ``wait_seconds`` after the frontend is
  running) and runs ``boot_s`` seconds later. States derive from the clock — ``pending``
  before its start, ``booting`` until then, ``running`` after — unless it was stopped or its
  boot failed. With ``wait`` (the default) it returns once every node is running, or fails
  after the boot timeout when they cannot be.
* **Failures.** A cluster whose boot fails (drawn from ``failure_rate`` with a seeded hash
  of its name, so runs are reproducible) has its frontend recorded, in state ``failed``, and
  ``create_cluster`` raises :class:`~pcc.common.errors.DriverError`: the site tool's
  clean-up after a failed boot is exercised as with a real back-end.
* **Addresses.** Private addresses are the spec's. The frontend's public address is the
  spec's ``network.public_address`` when the site gives one (bridge mode; SSH port 22);
  otherwise (user mode) it is the site's ``forward_address`` with a port drawn from
  ``forward_ports`` by a hash of the cluster's name. Nothing listens there, and with more
  clusters than ports two clusters may share one.
* **Contextualization.** Each node's documents (cloud-init user-data, meta-data,
  network-config and pragma_boot's vc-out.xml) are kept in a per-cluster file beside the
  state, their digest in the cluster's record, so they can be read back as a guest would.
* **Images.** Any repository entry boots: its templates are not looked at.
* ENT interfaces and site-allocated public addresses are "supported": the frontend's
  vc-out.xml and network-config describe them; nothing is attached.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pcc.common.errors import DriverError
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
from pcc.drivers.simulated import store
from pcc.drivers.simulated.settings import STATE_FILE, SimulatedSettings

log = logging.getLogger(__name__)

# The simulated back-end's node states (derived from a node's status and the clock).
NATIVE_STATES: dict[str, NodeState] = {
    "pending": NodeState.PENDING,  # created; starts when what it depends on is running
    "booting": NodeState.BOOTING,  # started, not yet boot_s seconds ago
    "running": NodeState.RUNNING,
    "stopped": NodeState.STOPPED,  # shut down
    "failed": NodeState.ERROR,  # its boot failed (failure_rate)
}
ACTIVE_NATIVE = frozenset({"pending", "booting", "running"})
UP, STOPPED, FAILED = "up", "stopped", "failed"  # a node's recorded status
ROLES = {r.value: r for r in Role}


def node_state(native: str | None) -> NodeState:
    return NATIVE_STATES.get(native or "", NodeState.UNKNOWN)


def native_state(node: Mapping[str, Any], now: float) -> str:
    """A recorded node's native state at ``now``."""
    status = node.get("status")
    if status == UP:
        if now < node["start"]:
            return "pending"
        return "booting" if now < node["ready"] else "running"
    return str(status)  # "stopped", "failed"; anything else is no state the table knows


def _unit(text: str) -> float:
    """A number in [0, 1) from a hash of ``text``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def boot_fails(cluster: str, failure_rate: float, seed: int = 0) -> bool:
    """Whether the boot of ``cluster`` fails: the same answer for the same name and seed."""
    return failure_rate > 0 and _unit(f"{seed}/{cluster}") < failure_rate


def forward_port(cluster: str, ports: tuple[int, int]) -> int:
    """The synthetic SSH port of a frontend without a public address of its own."""
    lo, hi = ports
    return lo + int.from_bytes(hashlib.sha256(cluster.encode()).digest()[:4], "big") % (hi - lo + 1)


def documents_of(spec: ClusterSpec, node: NodeSpec) -> dict[str, str]:
    docs = spec.documents.get(node.name)
    if docs is None:
        raise DriverError(f"cluster {spec.name}: no contextualization documents for {node.name}")
    return {
        "user-data": docs.user_data,
        "vc-out.xml": docs.vc_out,
        "meta-data": docs.meta_data,
        "network-config": docs.network_config,
    }


def node_records(
    spec: ClusterSpec,
    now: float,
    boot_s: float,
    public: tuple[str, int],
) -> list[dict[str, Any]]:
    """The state file's records of the spec's nodes created at ``now`` (pure)."""
    records: list[dict[str, Any]] = []
    ready: dict[str, float] = {}
    for node in (spec.frontend, *spec.computes):
        start = now
        if node.depends_on in ready:
            start = ready[node.depends_on] + node.wait_seconds
        ready[node.name] = start + boot_s
        frontend = node.role is Role.FRONTEND
        records.append(
            {
                "name": node.name,
                "role": node.role.value,
                "vcpus": node.vcpus,
                "memory_mib": node.memory_mib,
                "private_ip": node.private_ip,
                "public_ip": public[0] if frontend else None,
                "ssh_port": public[1] if frontend else None,
                "start": start,
                "ready": start + boot_s,
                "status": UP,
            }
        )
    return records


def node_info(cluster: str, node: Mapping[str, Any], now: float) -> NodeInfo:
    native = native_state(node, now)
    return NodeInfo(
        cluster=cluster,
        name=node["name"],
        role=ROLES.get(node.get("role", ""), Role.COMPUTE),
        state=NATIVE_STATES.get(native, NodeState.UNKNOWN),
        vcpus=node["vcpus"],
        memory_mib=node["memory_mib"],
        private_ip=node.get("private_ip"),
        public_ip=node.get("public_ip"),
        ssh_port=node.get("ssh_port"),
        extra={"simulated_state": native, "ready": node.get("ready")},
    )


class SimulatedDriver(Driver):
    """A site that boots nothing; see the module's description. ``clock`` (wall-clock
    seconds: the state is shared by processes) and ``sleep`` can be replaced in tests."""

    name = "simulated"
    features = frozenset({FEATURE_ENT, FEATURE_PUBLIC_ADDRESS})
    settings_type = SimulatedSettings

    def __init__(
        self,
        settings: SimulatedSettings,
        site: SiteContext,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(settings, site)
        self.settings: SimulatedSettings = settings
        self.store = store.Store(settings.state_file or site.staging / STATE_FILE)
        self.clock, self.sleep = clock, sleep

    # -- boot ------------------------------------------------------------------------------
    def _public(self, spec: ClusterSpec) -> tuple[str, int]:
        if spec.network.public_address is not None:
            return spec.network.public_address, 22
        net = self.site.network
        return net.forward_address, forward_port(spec.name, net.forward_ports)

    def create_cluster(
        self, spec: ClusterSpec, timeout: float, on_staged: Callable[[], None] | None = None
    ) -> list[NodeInfo]:
        self.validate(spec)
        started = self.clock()
        texts = {n.name: documents_of(spec, n) for n in spec.nodes}
        fails = boot_fails(spec.name, self.settings.failure_rate, self.settings.seed)
        with self.store.update() as change:
            if spec.name in change:
                raise DriverError(f"cluster {spec.name}: the simulated site already has it")
            self.store.write_documents(spec.name, texts)
            if on_staged is not None:
                on_staged()
            now = self.clock()
            records = node_records(spec, now, self.settings.boot_s, self._public(spec))
            if fails:
                records = [{**records[0], "status": FAILED}]
            change.put(spec.name, {"created": now, "documents": store.digest(texts), "nodes": records})
        if fails:
            raise DriverError(
                f"cluster {spec.name}: the simulated boot of {records[0]['name']} failed "
                f"(failure_rate {self.settings.failure_rate}, seed {self.settings.seed})"
            )
        log.info("cluster %s: %d simulated nodes created", spec.name, len(records))
        if self.settings.wait:
            self._wait_running(spec.name, max(r["ready"] for r in records), started + timeout)
        return list(self.list_nodes(spec.name))

    def _wait_running(self, cluster: str, ready: float, deadline: float) -> None:
        now = self.clock()
        if ready > deadline:
            self.sleep(max(0.0, deadline - now))
            raise DriverError(
                f"cluster {cluster}: simulated nodes not running within the boot timeout "
                f"(they boot in {self.settings.boot_s} s)"
            )
        if ready > now:
            self.sleep(ready - now)

    # -- list / shutdown / clean -------------------------------------------------------------
    def list_nodes(self, cluster: str | None = None) -> Sequence[NodeInfo]:
        clusters = self.store.clusters() if cluster is None else {cluster: self.store.cluster(cluster)}
        now = self.clock()
        try:
            return [
                node_info(name, n, now) for name, entry in clusters.items() if entry for n in entry["nodes"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise DriverError(f"{self.store.path}: a malformed cluster entry ({exc!r})") from None

    def shutdown(self, cluster: str) -> int:
        with self.store.update() as change:
            entry = change.get(cluster)
            now = self.clock()
            nodes = entry.get("nodes", []) if entry else []
            stopped = sum(1 for n in nodes if native_state(n, now) in ACTIVE_NATIVE)
            if entry is not None and any(n["status"] != STOPPED for n in nodes):
                for node in nodes:
                    node["status"] = STOPPED
                change.put(cluster, entry)
        if stopped:
            log.info("cluster %s: %d simulated nodes stopped", cluster, stopped)
        return stopped

    def clean(self, cluster: str) -> CleanResult:
        with self.store.update() as change:
            entry = change.pop(cluster)
            had_files = self.store.remove_documents(cluster)
        return CleanResult(removed_nodes=len(entry.get("nodes", [])) if entry else 0, removed_files=had_files)

    # -- check -----------------------------------------------------------------------------
    def check(self) -> DriverHealth:
        try:
            clusters = self.store.clusters()
        except DriverError as exc:
            return DriverHealth(False, str(exc))
        nodes = sum(len(e["nodes"]) for e in clusters.values())
        s = self.settings
        return DriverHealth(
            True,
            f"simulated site (boots nothing) in {self.store.path}: {len(clusters)} clusters, {nodes} nodes",
            {
                "state_file": str(self.store.path),
                "clusters": len(clusters),
                "nodes": nodes,
                "boot_s": s.boot_s,
                "failure_rate": s.failure_rate,
            },
        )
