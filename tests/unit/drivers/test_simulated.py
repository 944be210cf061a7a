"""The simulated driver: its settings, its state table, states that follow the clock, failures
drawn reproducibly, idempotent shutdown and clean, the state file's layout and its updates
from several threads and processes at once, and a listing of thousands of clusters."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pcc.common.errors import ConfigError, DriverError
from pcc.common.protocol import NodeState, Role
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import FEATURE_ENT, ClusterSpec, EntRequest
from pcc.drivers.simulated import NATIVE_STATES, SimulatedDriver, SimulatedSettings, store
from pcc.drivers.simulated import driver as sim
from pcc.site import config
from pcc.site.service import BootRequest, SiteService

from .conftest import site_toml

KEY = "ssh-ed25519 AAAA1234 alice@lab"


class Clock:
    """Wall-clock seconds the test moves; ``sleep`` moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def site(tmp_path: Path, bridge: bool = False, **table: object) -> SiteService:
    """A site using the simulated driver (``table``: its settings) over the sample repository."""
    replace = {'name = "libvirt"': 'name = "simulated"'}
    if bridge:
        replace |= {
            'mode = "user"': 'mode = "bridge"\nprivate_bridge = "br-private"',
            "# [network.public]": "[network.public]",
            '# range = "192.0.2.10-192.0.2.40"': 'range = "192.0.2.10-192.0.2.40"',
            '# netmask = "255.255.255.0"': 'netmask = "255.255.255.0"',
            '# gateway = "192.0.2.1"': 'gateway = "192.0.2.1"',
            '# bridge = "br-public"': 'bridge = "br-public"',
        }
    cfg = config.load(site_toml(tmp_path, **replace))
    return SiteService(cfg, driver_for(cfg, **table))


def driver_for(cfg: config.SiteConfig, clock: Clock | None = None, **table: object) -> SimulatedDriver:
    base = SiteService(cfg).site_context
    settings = SimulatedSettings.from_toml(TomlReader(cfg.path, table, "driver.simulated"))
    if clock is None:
        return SimulatedDriver(settings, base)
    return SimulatedDriver(settings, base, clock=clock, sleep=clock.sleep)


def spec_of(
    svc: SiteService, cluster: str = "alpha", cpus: int = 1, public: str | None = None
) -> ClusterSpec:
    return svc.plan(
        BootRequest("tiny", cpus, Path("/dev/null"), cluster=cluster),
        svc.repository.image("tiny"),
        public,
        KEY,
    )


def simulated(svc: SiteService) -> SimulatedDriver:
    assert isinstance(svc.driver, SimulatedDriver)
    return svc.driver


# -- settings ---------------------------------------------------------------------------------
def settings(tmp_path: Path, **table: object) -> SimulatedSettings:
    return SimulatedSettings.from_toml(TomlReader(tmp_path / "site.toml", table, "driver.simulated"))


def test_settings_defaults_and_values(tmp_path: Path) -> None:
    assert settings(tmp_path) == SimulatedSettings(boot_s=0.0, failure_rate=0.0, seed=0, wait=True)
    got = settings(tmp_path, boot_s=30, failure_rate=0.25, seed=7, state_file="sim/state.json", wait=False)
    assert (got.boot_s, got.failure_rate, got.seed, got.wait) == (30.0, 0.25, 7, False)
    assert got.state_file == tmp_path / "sim" / "state.json"  # relative to the site file
    assert settings(tmp_path, state_file="/srv/s.json").state_file == Path("/srv/s.json")
    assert settings(tmp_path, failure_rate=1).failure_rate == 1.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"boot": 3}, r"boot: unknown setting \(known: boot_s, failure_rate, seed, state_file, wait\)"),
        ({"boot_s": -1}, r"boot_s: must be >= 0 seconds, got -1.0"),
        ({"boot_s": float("inf")}, r"boot_s: must be >= 0 seconds"),
        ({"boot_s": "10"}, r"boot_s: expected float, got str"),
        ({"failure_rate": 1.5}, r"failure_rate: must be within 0 and 1, got 1.5"),
        ({"failure_rate": float("nan")}, r"failure_rate: must be within 0 and 1"),
        ({"seed": 1.5}, r"seed: expected int"),
        ({"seed": True}, r"seed: expected int"),
        ({"state_file": ""}, r"state_file: must be a file's path"),
        ({"wait": "yes"}, r"wait: expected bool"),
    ],
)
def test_settings_errors_name_the_table_and_the_key(tmp_path: Path, table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        settings(tmp_path, **table)
    assert str(exc.value).startswith(f"{tmp_path / 'site.toml'}: [driver.simulated] ")


def test_the_state_file_defaults_to_the_staging_directory(tmp_path: Path) -> None:
    driver = simulated(site(tmp_path))
    assert driver.store.path == tmp_path / "staging" / "simulated.json"
    assert driver.store.documents_dir == tmp_path / "staging" / "simulated-documents"


# -- the state table ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("pending", NodeState.PENDING),
        ("booting", NodeState.BOOTING),
        ("running", NodeState.RUNNING),
        ("stopped", NodeState.STOPPED),
        ("failed", NodeState.ERROR),
        ("exploded", NodeState.UNKNOWN),
        ("", NodeState.UNKNOWN),
        (None, NodeState.UNKNOWN),
    ],
)
def test_native_states_map_through_the_table_unknown_to_unknown(native: str | None, state: NodeState) -> None:
    assert sim.node_state(native) is state


def test_a_nodes_native_state_follows_its_status_and_the_clock() -> None:
    node = {"status": "up", "start": 100.0, "ready": 110.0}
    assert [sim.native_state(node, t) for t in (99.9, 100.0, 109.9, 110.0, 1e12)] == [
        "pending",
        "booting",
        "booting",
        "running",
        "running",
    ]
    assert sim.native_state({**node, "status": "stopped"}, 105) == "stopped"
    assert sim.native_state({**node, "status": "failed"}, 200) == "failed"
    assert sim.node_state(sim.native_state({**node, "status": "melted"}, 200)) is NodeState.UNKNOWN
    assert set(NATIVE_STATES) == {"pending", "booting", "running", "stopped", "failed"}


# -- boot, timing and addresses -------------------------------------------------------------
def test_a_cluster_is_what_the_spec_says_and_boots_in_boot_s(tmp_path: Path) -> None:
    clock = Clock()
    svc = site(tmp_path)
    driver = driver_for(svc.config, clock, boot_s=20, wait=False)
    spec = spec_of(svc)
    staged: list[float] = []
    nodes = driver.create_cluster(spec, timeout=60, on_staged=lambda: staged.append(clock.now))
    assert len(staged) == 1 and clock.slept == []  # wait = false: returned at once
    assert [(n.name, n.role, n.state) for n in nodes] == [
        ("alpha-frontend", Role.FRONTEND, NodeState.BOOTING),
        ("alpha-compute-0", Role.COMPUTE, NodeState.BOOTING),
    ]
    fe, compute = nodes
    planned = spec.nodes[1]
    assert (compute.vcpus, compute.memory_mib) == (planned.vcpus, planned.memory_mib) == (1, 128)
    assert compute.private_ip == planned.private_ip == "10.1.0.10"
    assert fe.private_ip == "10.1.0.1" and compute.public_ip is None and compute.ssh_port is None
    # User mode: the site's forward address, a port from the site's range drawn from the name.
    assert fe.public_ip == "127.0.0.1" and fe.ssh_port == sim.forward_port("alpha", (22000, 22099))
    assert 22000 <= fe.ssh_port <= 22099
    clock.now += 19.9
    assert {n.state for n in driver.list_nodes("alpha")} == {NodeState.BOOTING}
    clock.now += 0.1
    assert {n.state for n in driver.list_nodes("alpha")} == {NodeState.RUNNING}
    assert driver.list_nodes("alpha")[0].extra["simulated_state"] == "running"


def test_create_waits_for_running_and_computes_wait_for_their_frontend(tmp_path: Path) -> None:
    clock = Clock()
    svc = site(tmp_path)
    driver = driver_for(svc.config, clock, boot_s=10)
    spec = spec_of(svc)
    (fe, compute) = spec.nodes
    spec = dataclasses.replace(
        spec, nodes=(fe, dataclasses.replace(compute, depends_on=fe.name, wait_seconds=5))
    )
    t0 = clock.now
    nodes = driver.create_cluster(spec, timeout=60)
    assert clock.slept == [25.0]  # the frontend's 10 s, 5 s, then the compute's 10 s
    assert {n.state for n in nodes} == {NodeState.RUNNING}
    clock.now = t0 + 12  # the frontend is up, the compute waits its 5 s
    assert [n.state for n in driver.list_nodes("alpha")] == [NodeState.RUNNING, NodeState.PENDING]
    clock.now = t0 + 16
    assert [n.state for n in driver.list_nodes("alpha")] == [NodeState.RUNNING, NodeState.BOOTING]


def test_nodes_that_cannot_boot_within_the_timeout_fail_after_it(tmp_path: Path) -> None:
    clock = Clock()
    svc = site(tmp_path)
    driver = driver_for(svc.config, clock, boot_s=100)
    with pytest.raises(DriverError, match=r"not running within the boot timeout \(they boot in 100.0 s\)"):
        driver.create_cluster(spec_of(svc), timeout=30)
    assert clock.slept == [30.0]


def test_a_bridge_site_gives_the_frontend_its_public_address(tmp_path: Path) -> None:
    svc = site(tmp_path, bridge=True)
    nodes = simulated(svc).create_cluster(spec_of(svc, public="192.0.2.10"), timeout=60)
    assert (nodes[0].public_ip, nodes[0].ssh_port) == ("192.0.2.10", 22)
    assert nodes[1].private_ip == "10.1.0.10" and nodes[1].public_ip is None


def test_ent_is_recorded_and_an_existing_cluster_is_refused(tmp_path: Path) -> None:
    svc = site(tmp_path, bridge=True)
    driver = simulated(svc)
    assert FEATURE_ENT in driver.features
    spec = spec_of(svc, public="192.0.2.10")
    ent = dataclasses.replace(
        spec, network=dataclasses.replace(spec.network, ent=(EntRequest("e", "1.0.0.0/8"),))
    )
    driver.validate(ent)
    driver.create_cluster(spec, timeout=60)
    with pytest.raises(DriverError, match="cluster alpha: the simulated site already has it"):
        driver.create_cluster(spec, timeout=60)
    with pytest.raises(DriverError, match="no contextualization documents for beta-frontend"):
        driver.create_cluster(
            dataclasses.replace(spec_of(svc, "beta", public="192.0.2.11"), documents={}), 60
        )
    assert driver.store.cluster("beta") is None


def test_each_nodes_documents_are_kept_with_their_digest(tmp_path: Path) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    spec = spec_of(svc)
    driver.create_cluster(spec, timeout=60)
    kept = driver.store.read_documents("alpha")
    entry = driver.store.cluster("alpha")
    assert entry is not None
    for node in entry["nodes"]:
        docs = spec.documents[node["name"]]
        texts = kept[node["name"]]
        assert (texts["user-data"], texts["vc-out.xml"]) == (docs.user_data, docs.vc_out)
        assert (texts["meta-data"], texts["network-config"]) == (docs.meta_data, docs.network_config)
    assert entry["documents"] == store.digest(kept)
    assert (
        KEY in kept["alpha-frontend"]["user-data"]
        and "alpha-compute-0" in kept["alpha-frontend"]["vc-out.xml"]
    )


# -- failures -----------------------------------------------------------------------------------
def test_failures_are_drawn_from_the_name_and_seed_reproducibly() -> None:
    names = [f"c{i}" for i in range(2000)]
    assert not any(sim.boot_fails(n, 0.0) for n in names) and all(sim.boot_fails(n, 1.0) for n in names)
    drawn = [n for n in names if sim.boot_fails(n, 0.3)]
    assert drawn == [n for n in names if sim.boot_fails(n, 0.3)]  # the same names every time
    assert 500 < len(drawn) < 700
    assert drawn != [n for n in names if sim.boot_fails(n, 0.3, seed=1)]
    assert set(n for n in names if sim.boot_fails(n, 0.1)) <= set(drawn)  # a lower rate: a subset


def test_a_failed_boot_leaves_its_frontend_failed_and_raises(tmp_path: Path) -> None:
    svc = site(tmp_path, failure_rate=1)
    driver = simulated(svc)
    with pytest.raises(
        DriverError, match=r"simulated boot of alpha-frontend failed \(failure_rate 1.0, seed 0\)"
    ):
        driver.create_cluster(spec_of(svc, cpus=2), timeout=60)
    (fe,) = driver.list_nodes("alpha")
    assert (fe.name, fe.state, fe.extra["simulated_state"]) == ("alpha-frontend", NodeState.ERROR, "failed")
    assert driver.shutdown("alpha") == 0  # it was not running
    assert driver.clean("alpha").removed_nodes == 1 and driver.list_nodes("alpha") == []


def test_the_site_tool_cleans_up_after_a_failed_boot(tmp_path: Path) -> None:
    svc = site(tmp_path, failure_rate=1)
    (tmp_path / "key.pub").write_text(KEY + "\n")
    with pytest.raises(DriverError, match="simulated boot"):
        svc.boot(BootRequest("tiny", 1, tmp_path / "key.pub", cluster="alpha"))
    driver = simulated(svc)
    assert driver.list_nodes() == [] and not driver.store.documents_path("alpha").exists()


# -- shutdown and clean -----------------------------------------------------------------------
def test_shutdown_and_clean_are_idempotent(tmp_path: Path) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    driver.create_cluster(spec_of(svc), timeout=60)
    driver.create_cluster(spec_of(svc, "beta"), timeout=60)
    assert driver.shutdown("alpha") == 2 and driver.shutdown("alpha") == 0
    assert {n.state for n in driver.list_nodes("alpha")} == {NodeState.STOPPED}
    assert {n.state for n in driver.list_nodes("beta")} == {NodeState.RUNNING}
    first = driver.clean("alpha")
    assert (first.removed_nodes, first.removed_files) == (2, True)
    again = driver.clean("alpha")
    assert (again.removed_nodes, again.removed_files, again.released) == (0, False, ())
    assert driver.shutdown("never") == 0 and driver.clean("never").removed_nodes == 0
    assert [n.cluster for n in driver.list_nodes()] == ["beta", "beta"]


def test_check_counts_what_the_state_file_holds(tmp_path: Path) -> None:
    svc = site(tmp_path, boot_s=5, wait=False)
    driver = simulated(svc)
    assert driver.check().reachable and driver.check().details["clusters"] == 0
    driver.create_cluster(spec_of(svc), timeout=60)
    health = driver.check()
    assert health.reachable and "boots nothing" in health.message
    assert (health.details["clusters"], health.details["nodes"], health.details["boot_s"]) == (1, 2, 5.0)


# -- the state file -----------------------------------------------------------------------------
def test_the_state_file_is_json_a_cluster_a_line(tmp_path: Path) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    for name in ("alpha", "beta", "gamma"):
        driver.create_cluster(spec_of(svc, name), timeout=60)
    raw = driver.store.path.read_bytes()
    assert list(json.loads(raw)["clusters"]) == ["alpha", "beta", "gamma"]
    lines = raw.decode().splitlines()
    assert lines[0] == '{"format":"pcc-simulated/1","clusters":{' and lines[-1] == "}}"
    assert [line.split(":", 1)[0] for line in lines[1:-1]] == ['"alpha"', '"beta"', '"gamma"']
    driver.clean("beta")
    assert list(json.loads(driver.store.path.read_bytes())["clusters"]) == ["alpha", "gamma"]
    driver.clean("alpha")
    driver.clean("gamma")
    assert json.loads(driver.store.path.read_bytes()) == {"format": "pcc-simulated/1", "clusters": {}}


def test_a_state_file_laid_out_otherwise_is_read_and_rewritten(tmp_path: Path) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    driver.create_cluster(spec_of(svc), timeout=60)
    state = json.loads(driver.store.path.read_bytes())
    driver.store.path.write_text(json.dumps(state, indent=2))  # as a person might leave it
    assert [n.name for n in driver.list_nodes("alpha")] == ["alpha-frontend", "alpha-compute-0"]
    assert len(driver.list_nodes()) == 2
    assert driver.shutdown("alpha") == 2
    assert driver.store.path.read_bytes().startswith(store.HEADER)
    assert json.loads(driver.store.path.read_bytes())["clusters"]["alpha"]["nodes"][0]["status"] == "stopped"


@pytest.mark.parametrize(
    "text", ["", "{not json", '{"format": "other", "clusters": {}}', '{"format": "pcc-simulated/1"}']
)
def test_a_broken_state_file_is_a_driver_error(tmp_path: Path, text: str) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    driver.store.path.parent.mkdir(parents=True, exist_ok=True)
    driver.store.path.write_text(text)
    with pytest.raises(DriverError, match="not a simulated site's state file"):
        driver.list_nodes()
    with pytest.raises(DriverError, match="not a simulated site's state file"):
        driver.shutdown("alpha")
    assert not driver.check().reachable


def test_a_malformed_entry_fails_listing_and_is_cleaned(tmp_path: Path) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    driver.create_cluster(spec_of(svc), timeout=60)
    driver.store.path.write_bytes(
        store.HEADER
        + b'"alpha":{"nodes":[{"name":"alpha-frontend"}]},\n"beta":{"nodes":['
        + b"\n"
        + store.FOOTER
    )
    with pytest.raises(DriverError, match="a malformed cluster entry"):
        driver.list_nodes("alpha")
    with pytest.raises(DriverError, match="not a simulated site's state file"):
        driver.list_nodes()
    with pytest.raises(DriverError, match="cluster beta: a malformed entry"):
        driver.shutdown("beta")
    assert driver.clean("beta").removed_nodes == 0  # removed all the same
    assert driver.clean("alpha").removed_nodes == 1 and driver.list_nodes() == []


def _create_many(site_file: Path, prefix: str, count: int) -> None:
    """Create ``count`` clusters (a process's or a thread's share of the concurrency test)."""
    svc = SiteService(config.load(site_file))
    driver = driver_for(svc.config)
    for i in range(count):
        driver.create_cluster(spec_of(svc, f"{prefix}-{i}"), timeout=60)
        if i % 2:
            driver.shutdown(f"{prefix}-{i}")


def test_concurrent_updates_from_threads_and_processes_lose_nothing(tmp_path: Path) -> None:
    svc = site(tmp_path)
    driver = simulated(svc)
    errors: list[BaseException] = []
    stop = threading.Event()

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    def reader() -> None:
        while not stop.is_set():  # a reader never sees half a file
            driver.list_nodes()
            driver.list_nodes("t0-1")

    fork = multiprocessing.get_context("fork")
    processes = [fork.Process(target=_create_many, args=(svc.config.path, f"p{i}", 8)) for i in range(2)]
    threads = [
        threading.Thread(target=guarded(lambda i=i: _create_many(svc.config.path, f"t{i}", 8)))
        for i in range(3)
    ]
    watcher = threading.Thread(target=guarded(reader))
    watcher.start()
    for p in processes:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in processes:
        p.join(60)
    stop.set()
    watcher.join()
    assert errors == [] and [p.exitcode for p in processes] == [0, 0]
    nodes = driver.list_nodes()
    clusters = {n.cluster for n in nodes}
    assert clusters == {f"{w}-{i}" for w in ("p0", "p1", "t0", "t1", "t2") for i in range(8)}
    assert len(nodes) == 80
    assert sum(n.state is NodeState.STOPPED for n in nodes) == 40
    assert not list(driver.store.path.parent.glob(".simulated.json.*.tmp"))  # no temporary file left


def test_thousands_of_clusters_list_from_one_file(tmp_path: Path) -> None:
    """3,000 clusters of 2 nodes (how fast: bench/simulated_site.py; nothing is timed here)."""
    svc = site(tmp_path)
    driver = simulated(svc)
    spec = spec_of(svc)
    with driver.store.update() as change:
        for i in range(3000):
            named = dataclasses.replace(spec, name=f"c{i}")
            change.put(
                named.name,
                {"created": 0.0, "nodes": sim.node_records(named, 0.0, 0.0, ("127.0.0.1", 22000))},
            )
    nodes = driver.list_nodes()
    assert len(nodes) == 6000 and nodes[-1].cluster == "c2999"
    assert all(n.state is NodeState.RUNNING for n in nodes)
    assert [n.role for n in driver.list_nodes("c1234")] == [Role.FRONTEND, Role.COMPUTE]
    assert driver.list_nodes("c3000") == []
    driver.create_cluster(spec_of(svc, "one-more"), timeout=60)
    assert len(driver.list_nodes()) == 6002 and driver.list_nodes("c0")[0].cluster == "c0"
