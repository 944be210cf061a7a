"""Planning a cluster as a neutral spec, and the texts each node is given (vc-out.xml, cloud-init)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from pcc.common.errors import UnsupportedError, UserInputError
from pcc.common.keys import normalize_public_key
from pcc.drivers.base import ClusterSpec, Role
from pcc.site import config, context
from pcc.site.service import BootRequest, SiteService, mac_for

from .conftest import REPO, site_toml

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123def456ghi789jkl012mno345pqr678stu901vwx alice@lab"


def service(site_file: Path) -> SiteService:
    return SiteService(config.load(site_file))


def plan(site_file: Path, cpus: int, image: str = "tiny", cluster: str = "r42") -> ClusterSpec:
    svc = service(site_file)
    return svc.plan(
        BootRequest(image, cpus, Path("/dev/null"), cluster=cluster), svc.repository.image(image), key=KEY
    )


def test_num_cpus_zero_plans_only_the_frontend(site_file: Path) -> None:
    p = plan(site_file, 0)
    assert [n.name for n in p.nodes] == ["r42-frontend"]
    assert p.network.public_address is None  # user mode: the driver makes SSH reachable


def test_compute_nodes_add_up_to_num_cpus(site_file: Path) -> None:
    p = plan(site_file, 3)
    computes = [n for n in p.nodes if n.role is Role.COMPUTE]
    assert [n.name for n in computes] == ["r42-compute-0", "r42-compute-1", "r42-compute-2"]
    assert sum(n.vcpus for n in computes) == 3
    assert [n.interfaces[0].ip for n in computes] == ["10.1.0.10", "10.1.0.11", "10.1.0.12"]


def test_the_legacy_image_makes_computes_wait_for_the_frontend(site_file: Path) -> None:
    p = plan(site_file, 1, image="tiny-legacy")
    compute = p.nodes[1]
    assert (compute.depends_on, compute.wait_seconds) == ("r42-frontend", 1.0)


def test_macs_are_stable_and_distinct() -> None:
    assert mac_for("a", "n", 0) == mac_for("a", "n", 0)
    assert len({mac_for("a", "n", i) for i in range(50)} | {mac_for("b", "n", 0)}) == 51
    assert mac_for("a", "n", 0).startswith("52:54:00:")


def _values(value: Any, path: str = "spec") -> Iterator[tuple[str, Any]]:
    """Every value inside a spec, with where it is (the image's opaque templates excepted)."""
    yield path, value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if path.endswith(".image") and f.name == "templates":
                continue
            yield from _values(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _values(v, f"{path}[{k!r}]")
    elif isinstance(value, tuple | list):
        for i, v in enumerate(value):
            yield from _values(v, f"{path}[{i}]")


def test_a_plan_is_a_neutral_spec_with_no_back_end_terms(site_file: Path) -> None:
    spec = plan(site_file, 2)
    allowed = {"builtins", "pathlib", "pcc.drivers.base", "pcc.common.protocol"}
    for where, value in _values(spec):
        assert type(value).__module__ in allowed, f"{where} is a {type(value).__module__} value"
        if isinstance(value, enum.Enum | Path):
            continue
        if isinstance(value, str) and not where.endswith(("vc_out", "user_data", "network_config")):
            assert not value.endswith((".qcow2", ".iso", ".xml")), f"{where} = {value!r}"
            assert value not in ("udp", "bridge", "user", "qcow2"), f"{where} = {value!r}"
    assert {f.name for f in dataclasses.fields(spec.frontend)}.isdisjoint(
        {"disks", "seed", "domain_xml", "console_log", "nics", "attach"}
    )
    assert spec.ssh_key == KEY and spec.image.name == "tiny"
    assert spec.image.directory == REPO / "images" / "repository" / "tiny"
    assert set(spec.image.templates) == {"frontend", "compute"}
    assert spec.network.private_cidr == "10.1.0.0/24" and spec.network.ent == ()
    assert [(n.hostname, n.private_ip) for n in spec.nodes] == [
        ("r42-frontend", "10.1.0.1"),
        ("r42-compute-0", "10.1.0.10"),
        ("r42-compute-1", "10.1.0.11"),
    ]
    assert spec.frontend.mac == spec.frontend.interfaces[0].mac == mac_for("r42", "r42-frontend", 0)
    docs = spec.documents["r42-compute-1"]
    assert 'name="r42-compute-1"' in docs.vc_out and KEY in docs.user_data
    assert docs.meta_data == "instance-id: r42-r42-compute-1\nlocal-hostname: r42-compute-1\n"
    assert "10.1.0.11/24" in docs.network_config
    assert set(spec.documents) == {n.name for n in spec.nodes}


def _bridge_site_with_ent(tmp_path: Path) -> Path:
    path = site_toml(
        tmp_path, **{'mode = "user"': 'mode = "bridge"', "ent_enabled = false": "ent_enabled = true"}
    )
    text = path.read_text().replace("# private_bridge", "private_bridge")
    for line in (
        "[network.public]",
        "range =",
        "netmask =",
        "gateway =",
        "dns =",
        "bridge =",
        "[[network.ent]]",
    ):
        text = text.replace(f"# {line}", line, 1)
    text = text.replace('# name = "ent0"', 'name = "ent0"').replace('# cidr = "172.16', 'cidr = "172.16')
    text = text.replace('# bridge = "br-ent0"', 'bridge = "br-ent0"')
    path.write_text(text)
    return path


def test_ent_asked_of_a_driver_without_the_feature_is_unsupported_and_holds_nothing(
    tmp_path: Path,
) -> None:
    from tests.unit.drivers.fakes import FakeDriver

    cfg = config.load(_bridge_site_with_ent(tmp_path))
    assert [e.name for e in cfg.network.ent] == ["ent0"]
    (tmp_path / "key.pub").write_text(KEY + "\n")
    driver = FakeDriver.without_features(cfg)
    svc = SiteService(cfg, driver=driver)
    req = BootRequest(
        "tiny", 0, tmp_path / "key.pub", cluster="e1", add_ifaces=(("ent0", None),), enable_ent=True
    )
    with pytest.raises(UnsupportedError, match=r"ENT networks \(ent0\) are not supported at this site"):
        svc.boot(req)
    assert driver.created == []
    assert not (tmp_path / "staging" / "allocations.json").exists()
    spec = svc.plan(req, svc.repository.image("tiny"), "192.0.2.10", KEY)
    assert [(e.name, e.cidr) for e in spec.network.ent] == [("ent0", "172.16.0.0/24")]
    assert [i.network for i in spec.frontend.interfaces] == ["public", "private", "ent0"]


def test_frontend_vc_out_lists_its_interfaces_every_compute_and_the_key(site_file: Path) -> None:
    p = plan(site_file, 2)
    root = etree.fromstring(
        context.vc_out_frontend(p.nodes, KEY, ("10.0.2.3",), "r42-frontend.local").encode()
    )
    fe = root.find("frontend")
    assert fe.get("name") == "r42-frontend" and fe.get("fqdn") == "r42-frontend.local"
    assert fe.get("gw") == "10.0.2.2"
    public = fe.find("public")
    assert (public.get("ip"), public.get("netmask"), public.get("iface")) == (
        "10.0.2.15",
        "255.255.255.0",
        "eth0",
    )
    nodes = root.findall("compute/node")
    assert root.find("compute").get("count") == "2"
    assert [(n.get("name"), n.get("cpus"), n.get("ip")) for n in nodes] == [
        ("r42-compute-0", "1", "10.1.0.10"),
        ("r42-compute-1", "1", "10.1.0.11"),
    ]
    assert root.findtext("key") == KEY
    assert root.find("network/dns").get("ip") == "10.0.2.3"


def test_compute_vc_out_names_the_frontend_and_its_own_interface(site_file: Path) -> None:
    p = plan(site_file, 1)
    root = etree.fromstring(
        context.vc_out_compute(p.nodes[1], KEY, ("10.0.2.3",), "r42-frontend.local").encode()
    )
    assert root.find("frontend").get("fqdn") == "r42-frontend.local"
    assert root.find("compute").get("name") == "r42-compute-0"
    assert root.find("compute/private").get("ip") == "10.1.0.10"


def test_seed_texts_carry_hostname_key_and_network(site_file: Path) -> None:
    fe = plan(site_file, 0).frontend
    assert context.meta_data(fe) == "instance-id: r42-r42-frontend\nlocal-hostname: r42-frontend\n"
    ud = context.user_data(fe, KEY, "<vc/>\n")
    assert ud.startswith("#cloud-config\nhostname: r42-frontend\n")
    assert f"ssh_authorized_keys:\n  - {KEY}\n" in ud
    assert "  - path: /root/vc-out.xml\n" in ud and "      <vc/>\n" in ud
    nc = context.network_config(fe)
    assert f'macaddress: "{fe.interfaces[0].mac}"' in nc
    assert "      - 10.0.2.15/24\n" in nc and "        via: 10.0.2.2\n" in nc


@pytest.mark.parametrize(
    "text",
    ["", "not a key", "ssh-ed25519 AAAA\nssh-rsa BBBB", "ssh-dss AAAAB3Nz x", "ssh-ed25519 AAA$(reboot)"],
)
def test_only_one_openssh_public_key_is_accepted(text: str) -> None:
    with pytest.raises(UserInputError):
        normalize_public_key(text)


def test_key_comments_that_could_break_yaml_are_dropped() -> None:
    assert normalize_public_key("ssh-ed25519 AAAA1234 a: b # c") == "ssh-ed25519 AAAA1234"
    assert normalize_public_key("ssh-ed25519 AAAA1234 bob@x\n") == "ssh-ed25519 AAAA1234 bob@x"
