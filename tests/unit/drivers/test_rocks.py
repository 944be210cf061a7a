"""The Rocks driver without Rocks: its parsers on recorded ``rocks`` output (reconstructed
from Rocks 6.2's documentation and sources, tests/fakes/rocks/recorded), its settings, its
state table, and the argument lists it builds for each verb."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pcc.common.errors import ConfigError, DriverError, UnsupportedError
from pcc.common.protocol import NodeState, Role
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import ClusterSpec, EntRequest, SiteContext
from pcc.drivers.rocks import NATIVE_STATES, RocksDriver, RocksSettings, naming
from pcc.drivers.rocks import driver as rocks_driver
from pcc.drivers.rocks.commands import DiskSpec, RocksCommands
from pcc.drivers.rocks.parse import (
    RocksParseError,
    error_message,
    parse_add_cluster,
    parse_list_cluster,
    parse_list_host,
    parse_list_host_interface,
    parse_list_host_vm,
    parse_table,
    parse_version,
)
from pcc.drivers.rocks.settings import parse_vlans
from pcc.site import config
from pcc.site.service import BootRequest, SiteService
from tests.fakes.rocks import RECORDED

from .conftest import site_toml

ROCKS = "/opt/rocks/bin/rocks"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


# -- parsers ---------------------------------------------------------------------------------
def test_list_cluster_groups_client_nodes_under_their_frontend() -> None:
    clusters = parse_list_cluster(recorded("list-cluster-status.txt"))
    assert [(c.frontend, c.kind, c.status) for c in clusters] == [
        ("hpc-fe.sdsc.example.edu", "physical", None),
        ("frontend-0-0-0", "VM", "active"),
        ("pcc-alpha", "VM", "active"),
        ("pcc-beta", "VM", "nostate"),
        ("pcc-gamma", "VM", "crashed"),
    ]
    alpha = clusters[2]
    assert [(c.name, c.kind, c.status) for c in alpha.clients] == [
        ("vm-pcc-alpha-0", "VM", "active"),
        ("vm-pcc-alpha-1", "VM", "shutoff"),
    ]
    assert alpha.hosts == ("pcc-alpha", "vm-pcc-alpha-0", "vm-pcc-alpha-1")
    assert clusters[3].clients == ()
    assert clusters[4].clients[0].status == "nostate-error"


def test_list_cluster_without_status_and_with_trailing_blanks_trimmed() -> None:
    clusters = parse_list_cluster(recorded("list-cluster.txt"), status=False)
    assert [(c.frontend, [m.name for m in c.clients]) for c in clusters] == [
        ("hpc-fe.sdsc.example.edu", ["vm-container-0-0", "vm-container-0-1"]),
        ("rocks-216", ["vm-rocks-216-0", "vm-rocks-216-1"]),
    ]


def test_list_host_vm_joins_the_extra_mac_rows_of_a_vm() -> None:
    vms = parse_list_host_vm(recorded("list-host-vm-status.txt"))
    assert list(vms) == ["pcc-alpha", "vm-pcc-alpha-0", "vm-pcc-alpha-1"]
    fe = vms["pcc-alpha"]
    assert (fe.slice, fe.mem_mib, fe.cpus, fe.physhost, fe.virt_type, fe.status) == (
        0,
        2048,
        2,
        "hpc-fe",
        "hvm",
        "active",
    )
    assert fe.macs == ("76:77:6e:40:00:10", "76:77:6e:40:00:11")
    assert (vms["vm-pcc-alpha-1"].cpus, vms["vm-pcc-alpha-1"].status) == (3, "shutoff")


def test_list_host_vm_of_one_host_has_no_host_column() -> None:
    text = recorded("list-host-vm-one.txt")
    assert text.startswith("SLICE ")
    (vm,) = parse_list_host_vm(text, ["pcc-beta"]).values()
    assert (vm.host, vm.mem_mib, vm.status, len(vm.macs)) == ("pcc-beta", 4096, "nostate", 2)
    with pytest.raises(RocksParseError, match="without a host column"):
        parse_list_host_vm(text, ["pcc-beta", "pcc-alpha"])


def test_list_host_vm_with_disks_and_cdrom() -> None:
    vms = parse_list_host_vm(recorded("list-host-vm-showdisks.txt"), showdisks=True)
    fe = vms["pcc-alpha"]
    assert fe.disks == (
        "qcow2:/export/pcc/alpha/pcc-alpha-vda.qcow2,vda,virtio",
        "qcow2:/export/pcc/alpha/pcc-alpha-vdb.qcow2,vdb,virtio",
    )
    assert fe.cdrom == "/export/pcc/alpha/pcc-alpha-seed.iso"
    assert vms["vm-pcc-alpha-0"].cdrom is None


def test_list_host_interface_reads_addresses_vlans_and_cells_with_blanks() -> None:
    ifaces = parse_list_host_interface(recorded("list-host-interface.txt"))
    vlan_devices = [(i.host, i.vlan) for i in ifaces if i.iface and i.iface.startswith("vlan")]
    assert vlan_devices == [("hpc-fe", 4), ("hpc-fe", 7), ("vm-container-0-0", 4), ("vm-container-0-1", 4)]
    fe_public = next(i for i in ifaces if i.host == "pcc-alpha" and i.iface == "eth1")
    assert (fe_public.subnet, fe_public.ip, fe_public.vlan, fe_public.name) == (
        "public",
        "198.51.100.20",
        0,
        "pcc-alpha-public",
    )
    bonded = next(i for i in ifaces if i.host == "vm-container-0-1" and i.iface == "eth0")
    assert bonded.options == "bonding-opts=mode=4 miimon=100" and bonded.channel is None
    assert rocks_driver.free_vlan(range(4, 10), ifaces) == 5


def test_list_host_interface_of_one_host() -> None:
    text = recorded("list-host-interface-one.txt")
    assert [(i.host, i.iface, i.ip) for i in parse_list_host_interface(text, ["pcc-beta"])] == [
        ("pcc-beta", "eth0", "10.1.255.250"),
        ("pcc-beta", "eth1", "198.51.100.21"),
    ]
    assert {i.host for i in parse_list_host_interface(text)} == {None}  # whose: not said


def test_list_host_add_cluster_version_and_errors() -> None:
    hosts = parse_list_host(recorded("list-host.txt"))
    assert [(h.host, h.membership) for h in hosts][3:] == [
        ("pcc-alpha", "Frontend"),
        ("vm-pcc-alpha-0", "Hosted VM"),
    ]
    assert parse_add_cluster(recorded("add-cluster.txt")) == (
        "pcc-alpha",
        ("vm-pcc-alpha-0", "vm-pcc-alpha-1"),
    )
    assert parse_add_cluster(recorded("add-cluster-free-vlan.txt")) == ("frontend-0-0-1", ())
    assert parse_version(recorded("report-version.txt")) == "6.2"
    assert error_message(recorded("error-cannot-resolve.txt"), "") == 'cannot resolve host "pcc-nowhere"'
    assert error_message(recorded("error-invalid-command.txt"), "") == 'error - invalid rocks command "lsit"'
    assert error_message("", "Traceback...\nKeyError: 'x'\n") == "KeyError: 'x'"


def test_a_table_with_other_columns_is_refused_and_no_output_is_no_rows() -> None:
    with pytest.raises(RocksParseError, match="expected the columns FRONTEND CLIENT NODES TYPE STATUS"):
        parse_list_cluster(recorded("list-host.txt"))
    with pytest.raises(RocksParseError):
        parse_version("Error: something\n")
    assert parse_table("", ["host", "cpus"]) == []
    assert parse_list_cluster("\n") == []


# -- state table, names --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("active", NodeState.RUNNING),
        ("paused", NodeState.BOOTING),
        ("shutdown", NodeState.STOPPED),
        ("shutoff", NodeState.STOPPED),
        ("nostate", NodeState.STOPPED),
        ("crashed", NodeState.ERROR),
        ("nostate-error", NodeState.UNKNOWN),
        ("pmsuspended", NodeState.UNKNOWN),
        (None, NodeState.UNKNOWN),
    ],
)
def test_native_states_map_through_the_table_unknown_to_unknown(native: str | None, state: NodeState) -> None:
    assert rocks_driver.node_state(native) is state
    if native in NATIVE_STATES:
        assert NATIVE_STATES[native] is state


def test_rocks_host_names_and_back() -> None:
    fe = naming.frontend_host("pcc-", "alpha")
    assert (fe, naming.compute_host(fe, 3)) == ("pcc-alpha", "vm-pcc-alpha-3")
    assert naming.cluster_of("pcc-", "pcc-alpha") == "alpha"
    assert naming.cluster_of("pcc-", "frontend-0-0-0") is None and naming.cluster_of("pcc-", "pcc-") is None
    assert naming.node_of("alpha", fe, "vm-pcc-alpha-12") == ("alpha-compute-12", Role.COMPUTE)
    assert naming.node_of("alpha", fe, fe) == ("alpha-frontend", Role.FRONTEND)
    assert naming.node_of("alpha", fe, "hosted-vm-0-1-0") == ("hosted-vm-0-1-0", Role.COMPUTE)
    assert naming.host_of("alpha", fe, "alpha-compute-12") == "vm-pcc-alpha-12"
    assert naming.host_of("alpha", fe, "alpha-frontend") == fe


def test_nodes_are_what_rocks_lists() -> None:
    clusters = [
        c for c in parse_list_cluster(recorded("list-cluster-status.txt")) if c.frontend == "pcc-alpha"
    ]
    nodes = rocks_driver.nodes_from(
        "pcc-",
        clusters,
        parse_list_host_vm(recorded("list-host-vm-status.txt")),
        parse_list_host_interface(recorded("list-host-interface.txt")),
    )
    got = [
        (n.name, n.role, n.state, n.vcpus, n.memory_mib, n.private_ip, n.public_ip, n.ssh_port) for n in nodes
    ]
    assert got == [
        ("alpha-frontend", Role.FRONTEND, NodeState.RUNNING, 2, 2048, "10.1.0.1", "198.51.100.20", 22),
        ("alpha-compute-0", Role.COMPUTE, NodeState.RUNNING, 4, 1024, "10.1.0.10", None, None),
        ("alpha-compute-1", Role.COMPUTE, NodeState.STOPPED, 3, 1024, "10.1.0.11", None, None),
    ]
    assert {n.cluster for n in nodes} == {"alpha"}
    assert nodes[1].extra == {
        "rocks_host": "vm-pcc-alpha-0",
        "rocks_status": "active",
        "container": "vm-container-0-0",
        "vlan": 4,
    }


# -- settings -------------------------------------------------------------------------------------
def settings(tmp_path: Path, **table: object) -> RocksSettings:
    return RocksSettings.from_toml(TomlReader(tmp_path / "site.toml", table, "driver.rocks"))


def test_settings_defaults_and_values(tmp_path: Path) -> None:
    assert settings(tmp_path) == RocksSettings()
    assert RocksSettings().vlans == tuple(range(2, 4095)) and RocksSettings().command == ROCKS
    got = settings(
        tmp_path,
        command="/usr/local/bin/rocks",
        vlans="4-6, 10",
        disk_dir="disks",
        container_hosts=["vm-container-0-0", "vm-container-0-1"],
        fe_container="vm-container-0-2",
        name_prefix="vc-",
        poll_interval_s=1,
    )
    assert (got.command, got.vlans, got.disk_dir) == (
        "/usr/local/bin/rocks",
        (4, 5, 6, 10),
        tmp_path / "disks",
    )
    assert (
        got.container_hosts == ("vm-container-0-0", "vm-container-0-1")
        and got.fe_container == "vm-container-0-2"
    )
    assert (got.name_prefix, got.poll_interval_s) == ("vc-", 1.0)
    assert parse_vlans([7, 5, 5]) == (5, 7)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"vlan": "4-19"}, r"\[driver\.rocks\] vlan: unknown setting \(known: command, "),
        ({"vlans": "1-5"}, r"vlans: VLAN ids must be within 2-4094, got 1"),
        ({"vlans": "9-4"}, r"vlans: empty range"),
        ({"vlans": "four"}, r"vlans: not a VLAN id or FIRST-LAST range: 'four'"),
        ({"vlans": [4, True]}, r"vlans: expected 'FIRST-LAST"),
        ({"disk_dir": "/export/my disks"}, r"disk_dir: .*letters, digits"),
        ({"container_hosts": ["vm-container-0-0", "a b"]}, r"container_hosts: not a host name: 'a b'"),
        ({"container_hosts": "vm-container-0-0"}, r"container_hosts: expected list"),
        ({"name_prefix": ""}, r"name_prefix: 1-16 lower-case"),
        ({"poll_interval_s": 0}, r"poll_interval_s: must be > 0"),
    ],
)
def test_settings_errors_name_the_table_and_the_key(tmp_path: Path, table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        settings(tmp_path, **table)
    assert str(exc.value).startswith(f"{tmp_path / 'site.toml'}: [driver.rocks] ")


# -- a bridge-mode site and what the driver would run ---------------------------------------------
VC_IN = """<vc type='Local Beowulf'>
  <frontend><domain type='kvm'><memory unit='MiB'>2048</memory><vcpu>2</vcpu><devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='fe.qcow2'/>
      <target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='scratch.raw'/>
      <target dev='vdb' bus='ide'/></disk>
  </devices></domain></frontend>
  <compute><domain type='kvm'><memory unit='MiB'>1024</memory><vcpu>2</vcpu><devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='compute.qcow2'/>
      <target dev='vda' bus='virtio'/></disk>
  </devices></domain></compute>
</vc>
"""
ZFS = VC_IN.replace(
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='compute.qcow2'/>",
    "<disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='tank' volume='c'/>",
)


def bridge_site(tmp_path: Path) -> SiteService:
    repo = tmp_path / "repo"
    for name, text in (("disky", VC_IN), ("zfs", ZFS)):
        (repo / name).mkdir(parents=True)
        (repo / name / "vc-in.xml").write_text(text)
    tiny = (Path(__file__).resolve().parents[3] / "images" / "repository" / "tiny" / "vc-in.xml").read_text()
    (repo / "kernel").mkdir()
    (repo / "kernel" / "vc-in.xml").write_text(tiny)
    (repo / "vcdb.txt").write_text("disky,disky/vc-in.xml\nzfs,zfs/vc-in.xml\nkernel,kernel/vc-in.xml\n")
    path = site_toml(
        tmp_path,
        **{
            'path = "'
            + str(Path(__file__).resolve().parents[3] / "images" / "repository")
            + '"': f'path = "{repo}"',
            'name = "libvirt"': 'name = "rocks"',
            'mode = "user"': 'mode = "bridge"\nprivate_bridge = "eth0"',
            "# [network.public]": "[network.public]",
            '# range = "192.0.2.10-192.0.2.40"': 'range = "192.0.2.10-192.0.2.40"',
            '# netmask = "255.255.255.0"': 'netmask = "255.255.255.0"',
            '# gateway = "192.0.2.1"': 'gateway = "192.0.2.1"',
            '# bridge = "br-public"': 'bridge = "br-public"',
            "[driver.libvirt]": '[driver.rocks]\nvlans = "4-9"\n[driver.libvirt]',
        },
    )
    cfg = config.load(path)
    reader = TomlReader(cfg.path, cfg.driver_settings, "driver.rocks")
    base = SiteService(cfg)
    return SiteService(cfg, RocksDriver.from_toml(reader, base.site_context))


def spec_of(svc: SiteService, image: str, cpus: int, public: str | None = "192.0.2.10") -> ClusterSpec:
    return svc.plan(
        BootRequest(image, cpus, Path("/dev/null"), cluster="alpha"), svc.repository.image(image), public
    )


def test_boot_commands_are_argument_lists_from_the_plan(tmp_path: Path) -> None:
    svc = bridge_site(tmp_path)
    driver = svc.driver
    assert isinstance(driver, RocksDriver)
    spec = spec_of(svc, "disky", 3)  # a frontend, a 2-CPU compute and a 1-CPU compute
    plan = driver.ex_plan(spec)
    disks = tmp_path / "staging" / "rocks" / "alpha"
    assert [n.host for n in plan.nodes] == ["pcc-alpha", "vm-pcc-alpha-0", "vm-pcc-alpha-1"]
    rocks = RocksCommands(ROCKS)
    assert rocks_driver.add_cluster_command(plan, rocks, 4, driver.settings) == [
        ROCKS, "add", "cluster", "ip=192.0.2.10", "num-computes=2", "fe-name=pcc-alpha",
        "cluster-naming=true", "vlan=4", "cpus-per-compute=2", "mem-per-compute=1024", "gateway=192.0.2.1",
    ]  # fmt: skip
    fe, c0, c1 = spec.nodes
    commands = rocks_driver.configure_commands(plan, rocks)
    fe_private = next(i for i in fe.interfaces if i.network == "private")
    fe_public = next(i for i in fe.interfaces if i.network == "public")
    assert commands[:9] == [
        [ROCKS, "set", "host", "cpus", "pcc-alpha", "cpus=2"],
        [ROCKS, "set", "host", "vm", "pcc-alpha", "mem=2048"],
        [ROCKS, "set", "host", "vm", "pcc-alpha",
         f"disk=qcow2:{disks}/pcc-alpha-vda.qcow2,vda,virtio qcow2:{disks}/pcc-alpha-vdb.qcow2,vdb,ide",
         "disksize=1 1"],
        [ROCKS, "set", "host", "vm", "cdrom", "pcc-alpha", f"cdrom={disks}/pcc-alpha-seed.iso"],
        [ROCKS, "set", "host", "interface", "mac", "pcc-alpha", "iface=eth0", f"mac={fe_private.mac}"],
        [ROCKS, "set", "host", "interface", "ip", "pcc-alpha", "iface=eth0", "ip=10.1.0.1"],
        [ROCKS, "set", "host", "interface", "mac", "pcc-alpha", "iface=eth1", f"mac={fe_public.mac}"],
        [ROCKS, "set", "host", "boot", "pcc-alpha", "action=os"],
        [ROCKS, "set", "host", "cpus", "vm-pcc-alpha-0", "cpus=2"],
    ]  # fmt: skip
    assert [ROCKS, "set", "host", "cpus", "vm-pcc-alpha-1", "cpus=1"] in commands
    assert [
        ROCKS,
        "set",
        "host",
        "interface",
        "ip",
        "vm-pcc-alpha-1",
        "iface=eth0",
        f"ip={c1.private_ip}",
    ] in commands
    assert commands[-1] == [ROCKS, "sync", "config"]
    assert c0.private_ip == "10.1.0.10"


def test_the_other_verbs_command_lines() -> None:
    rocks = RocksCommands(ROCKS)
    assert rocks.list_cluster() == [ROCKS, "list", "cluster", "status=true"]
    assert rocks.list_host_vm(["pcc-a", "vm-pcc-a-0"]) == [
        ROCKS,
        "list",
        "host",
        "vm",
        "status=true",
        "pcc-a",
        "vm-pcc-a-0",
    ]
    assert rocks.list_host_interface() == [ROCKS, "list", "host", "interface"]
    assert rocks.start_host_vm("pcc-a") == [ROCKS, "start", "host", "vm", "pcc-a"]
    assert rocks.stop_host_vm("vm-pcc-a-0") == [ROCKS, "stop", "host", "vm", "vm-pcc-a-0"]
    assert rocks.remove_cluster("pcc-a") == [ROCKS, "remove", "cluster", "pcc-a"]
    assert rocks.remove_host(["vm-pcc-a-3"]) == [ROCKS, "remove", "host", "vm-pcc-a-3"]
    assert rocks.remove_host_interface("vm-container-0-0", "vlan4") == [
        ROCKS, "remove", "host", "interface", "vm-container-0-0", "iface=vlan4",
    ]  # fmt: skip
    assert rocks.report_version() == [ROCKS, "report", "version"]
    assert rocks.add_cluster("192.0.2.9", 0, "pcc-b", 5, 1, 512, None, ["c-0", "c-1"], "c-2")[-2:] == [
        "container-hosts=c-0 c-1",
        "fe-container=c-2",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        lambda r: r.start_host_vm("pcc-a; reboot"),
        lambda r: r.set_host_interface_ip("pcc-a", "eth0", "10.1.0.1 x"),
        lambda r: r.set_host_interface_mac("pcc-a", "eth0", "52:54:00:zz:00:00"),
        lambda r: r.set_host_vm_disks("pcc-a", [DiskSpec(Path("/x/a,b.qcow2"))]),
        lambda r: r.set_host_vm_cdrom("pcc-a", Path("/x/seed iso")),
        lambda r: r.add_cluster("192.0.2.9", -1, "pcc-b", 5, 1, 512),
    ],
)
def test_values_that_could_change_a_rocks_command_are_refused(bad: Callable[[RocksCommands], object]) -> None:
    with pytest.raises(DriverError):
        bad(RocksCommands(ROCKS))


def test_what_the_driver_cannot_do_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    svc = bridge_site(tmp_path)
    driver = svc.driver
    spec = spec_of(svc, "disky", 1)
    driver.validate(spec)
    with_ent = dataclasses.replace(
        spec, network=dataclasses.replace(spec.network, ent=(EntRequest("ent0", "172.16.0.0/24"),))
    )
    with pytest.raises(UnsupportedError, match=r"ENT networks .* not supported at this site"):
        driver.validate(with_ent)
    with pytest.raises(UnsupportedError, match=r"storage volumes.* not supported at this site"):
        driver.validate(spec_of(svc, "zfs", 1))
    with pytest.raises(UnsupportedError, match=r"kernel named in <os><kernel>.* not supported at this site"):
        driver.validate(spec_of(svc, "kernel", 1))


def test_the_driver_needs_the_bridge_network_mode(tmp_path: Path) -> None:
    cfg = config.load(site_toml(tmp_path))  # user mode
    site = SiteContext(cfg.name, cfg.staging, cfg.network, cfg.path)
    with pytest.raises(ConfigError, match=r'\[network\] mode: the rocks driver needs mode = "bridge"'):
        RocksDriver(RocksSettings(), site)


class Replay:
    """A ``rocks`` that answers from recorded output, and remembers what it was asked."""

    def __init__(self, answers: dict[tuple[str, ...], str]) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, argv: Sequence[str]) -> str:
        words = tuple(argv[1:])
        self.asked.append(words)
        return self.answers[words]


def test_list_reads_rocks_for_one_cluster_and_an_unknown_one_is_empty(tmp_path: Path) -> None:
    svc = bridge_site(tmp_path)
    hosts = ("pcc-alpha", "vm-pcc-alpha-0", "vm-pcc-alpha-1")
    replay = Replay(
        {
            ("list", "cluster", "status=true"): recorded("list-cluster-status.txt"),
            ("list", "host", "vm", "status=true", *hosts): recorded("list-host-vm-status.txt"),
            ("list", "host", "interface", *hosts): recorded("list-host-interface.txt"),
        }
    )
    driver = RocksDriver(svc.driver.settings, svc.site_context, run=replay)
    assert [n.name for n in driver.list_nodes("alpha")] == [
        "alpha-frontend",
        "alpha-compute-0",
        "alpha-compute-1",
    ]
    assert driver.list_nodes("never-booted") == []
    assert replay.asked[-1] == ("list", "cluster", "status=true")  # nothing else asked for it
