"""The Rocks driver end to end through the site tool's service, against the stand-in
``rocks``: a frontend and a compute boot, list as Rocks has them, got their seeds, and
clean leaves nothing in the stand-in's Rocks database or on disk; boots that fail half way
leave nothing either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from pcc.common.errors import DriverError
from pcc.common.protocol import NodeState, Role
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import SiteContext
from pcc.drivers.rocks import RocksDriver
from pcc.site import config
from pcc.site.service import BootRequest, SiteService
from tests.fakes import rocks as standin
from tests.integration.drivers.harness_rocks import IMAGE, make_site

XML = etree.XMLParser(resolve_entities=False, no_network=True)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SiteService, Path]]:
    path, program = make_site(tmp_path)
    monkeypatch.setenv("PATH", standin.path_with(program))
    cfg = config.load(path)
    reader = TomlReader(cfg.path, cfg.driver_settings, "driver.rocks")
    site = SiteContext(cfg.name, cfg.staging, cfg.network, cfg.path)
    # the driver is given, not looked up by name, so this runs before the registry lists it
    yield SiteService(cfg, RocksDriver.from_toml(reader, site)), program


def leftovers(svc: SiteService, program: Path, cluster: str) -> list[str]:
    found = standin.leftovers(program, f"pcc-{cluster}")
    found += [str(p) for p in (svc.config.staging / "rocks" / cluster).glob("*")]
    found += [f"address {a}" for a in svc.public_pool().held_by(cluster)]
    return found


def test_boot_list_and_clean_a_frontend_and_a_compute(
    site: tuple[SiteService, Path], user_key: tuple[Path, Path]
) -> None:
    svc, program = site
    result = svc.boot(BootRequest(IMAGE, 1, user_key[1], cluster="smoke"))
    assert result.message == "booted"
    nodes = {n.name: n for n in svc.list_cluster("smoke")}
    fe, compute = nodes["smoke-frontend"], nodes["smoke-compute-0"]
    assert (fe.role, compute.role) == (Role.FRONTEND, Role.COMPUTE)
    assert {n.state for n in nodes.values()} == {NodeState.RUNNING}
    assert (fe.vcpus, fe.memory_mib, compute.vcpus, compute.memory_mib) == (1, 256, 1, 128)
    assert (fe.public_ip, fe.ssh_port, fe.private_ip, compute.private_ip) == (
        "192.0.2.10",
        22,
        "10.1.0.1",
        "10.1.0.10",
    )

    state = standin.read_state(program)
    booted = state["booted"]["pcc-smoke"]
    assert booted["boot_action"] == "os"
    assert booted["disks"] == [f"qcow2:{svc.config.staging}/rocks/smoke/pcc-smoke-vda.qcow2"]
    key = user_key[1].read_text().split()[1]
    assert key in booted["seed"]["user-data"]
    vc_out = etree.fromstring(booted["seed"]["vc-out.xml"].encode(), XML)
    assert vc_out.xpath("//compute/node[@name='smoke-compute-0'][@ip='10.1.0.10']")
    assert set(booted["macs"]) == {nic.get("mac") for nic in vc_out.xpath("/vc/frontend/*")}
    words = [" ".join(w for w in argv if "=" not in w) for argv in state["log"]]
    assert words.count("start host vm pcc-smoke") == 1 and "start host vm vm-pcc-smoke-0" in words
    assert words.index("add cluster") < words.index("start host vm pcc-smoke")

    again = svc.boot(BootRequest(IMAGE, 1, user_key[1], cluster="smoke"))
    assert again.message == "already booted"
    assert svc.shutdown("smoke").counts["stopped"] == 2
    assert {n.state for n in svc.list_cluster("smoke")} == {NodeState.STOPPED}
    assert svc.clean("smoke").message == "cleaned"
    assert svc.list_cluster("smoke") == [] and leftovers(svc, program, "smoke") == []
    assert svc.clean("smoke").message == "nothing to clean"
    assert svc.list_cluster("never-booted") == []


@pytest.mark.parametrize(
    ("command", "after", "words"),
    [
        ("add cluster", 0, "failed to create a frontend VM"),  # leaves only a VLAN interface
        ("add cluster", 1, "failed to create a compute VM"),
        ("start host vm", 1, "unable to boot"),  # the frontend runs, the compute does not
    ],
)
def test_a_boot_that_fails_half_way_leaves_nothing(
    site: tuple[SiteService, Path], user_key: tuple[Path, Path], command: str, after: int, words: str
) -> None:
    svc, program = site
    with standin.fault(program, command, after), pytest.raises(DriverError, match=words):
        svc.boot(BootRequest(IMAGE, 1, user_key[1], cluster="halfway"))
    assert leftovers(svc, program, "halfway") == []
    assert svc.list_cluster("halfway") == []
