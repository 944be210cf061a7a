"""Planning a cluster and the texts each node is given (vc-out.xml, NoCloud seed, domain XML)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from pcc.common.errors import UserInputError
from pcc.common.keys import normalize_public_key
from pcc.drivers.base import Role
from pcc.drivers.libvirt import NS, build_domain_xml
from pcc.site import config, context
from pcc.site.service import BootRequest, SiteService, mac_for

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123def456ghi789jkl012mno345pqr678stu901vwx alice@lab"


def service(site_file: Path) -> SiteService:
    return SiteService(config.load(site_file))


def plan(site_file: Path, cpus: int, image: str = "tiny", cluster: str = "r42"):
    svc = service(site_file)
    return svc.plan(
        BootRequest(image, cpus, Path("/dev/null"), cluster=cluster), svc.repository.image(image), "22007"
    )


def test_num_cpus_zero_plans_only_the_frontend(site_file: Path) -> None:
    p = plan(site_file, 0)
    assert [n.name for n in p.nodes] == ["r42-frontend"]
    assert (p.public_address, p.ssh_port) == ("127.0.0.1", 22007)


def test_compute_nodes_add_up_to_num_cpus(site_file: Path) -> None:
    p = plan(site_file, 3)
    computes = [n for n in p.nodes if n.role is Role.COMPUTE]
    assert [n.name for n in computes] == ["r42-compute-0", "r42-compute-1", "r42-compute-2"]
    assert sum(n.vcpus for n in computes) == 3
    assert [n.nics[0].ip for n in computes] == ["10.1.0.10", "10.1.0.11", "10.1.0.12"]


def test_the_legacy_image_makes_computes_wait_for_the_frontend(site_file: Path) -> None:
    p = plan(site_file, 1, image="tiny-legacy")
    compute = p.nodes[1]
    assert (compute.depends_on, compute.wait_seconds) == ("r42-frontend", 1.0)


def test_staged_files_live_in_the_cluster_directory(site_file: Path, tmp_path: Path) -> None:
    fe = plan(site_file, 0).frontend
    cdir = tmp_path / "staging" / "clusters" / "r42"
    assert fe.disks[0].path == cdir / "r42-frontend-vda.qcow2"
    assert fe.seed == cdir / "r42-frontend-seed.iso"
    assert fe.console_log == cdir / "r42-frontend-console.log"


def test_macs_are_stable_and_distinct() -> None:
    assert mac_for("a", "n", 0) == mac_for("a", "n", 0)
    assert len({mac_for("a", "n", i) for i in range(50)} | {mac_for("b", "n", 0)}) == 51
    assert mac_for("a", "n", 0).startswith("52:54:00:")


def test_frontend_vc_out_lists_its_interfaces_every_compute_and_the_key(site_file: Path) -> None:
    p = plan(site_file, 2)
    root = etree.fromstring(context.vc_out_frontend(p, KEY, ("10.0.2.3",), "r42-frontend.local").encode())
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
        context.vc_out_compute(p, p.nodes[1], KEY, ("10.0.2.3",), "r42-frontend.local").encode()
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
    assert f'macaddress: "{fe.nics[0].mac}"' in nc
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


def test_domain_xml_replaces_disks_and_nics_and_keeps_other_devices(site_file: Path) -> None:
    fe = plan(site_file, 0).frontend
    dom = etree.fromstring(build_domain_xml(fe, "qemu").encode())
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "pcc-r42-frontend"
    assert dom.find("memory").text == "128" and dom.find("vcpu").text == "1"
    assert dom.findtext("os/kernel").endswith("images/repository/tiny/vmlinuz")
    disks = dom.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == [str(fe.disks[0].path), str(fe.seed)]
    assert disks[1].find("readonly") is not None
    (iface,) = dom.findall("devices/interface")
    assert iface.get("type") == "user" and iface.find("mac").get("address") == fe.nics[0].mac
    assert dom.find("devices/memballoon").get("model") == "none"  # the image's other devices stay
    assert dom.find("devices/serial/source").get("path") == str(fe.console_log)
    assert dom.find("devices/rng").get("model") == "virtio"
    meta = dom.find(f"metadata/{{{NS}}}node")
    assert dict(meta.attrib) == {
        "cluster": "r42",
        "name": "r42-frontend",
        "role": "frontend",
        "public_ip": "127.0.0.1",
        "ssh_port": "22007",
    }
