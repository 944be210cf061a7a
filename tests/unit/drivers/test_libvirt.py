"""The libvirt driver without libvirt: its settings, its plan of a spec, its domain XML."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from pcc.common.errors import ConfigError
from pcc.common.tomlcfg import TomlReader
from pcc.drivers.libvirt import LibvirtDriver, LibvirtSettings
from pcc.drivers.libvirt.domain import NS, ClusterLayout, build_domain_xml
from pcc.site import config
from pcc.site.service import BootRequest, SiteService

from .conftest import site_toml


def layout(
    site_file: Path, cpus: int, forward_port: int | None = 22007, image: str = "tiny"
) -> ClusterLayout:
    svc = SiteService(config.load(site_file))
    spec = svc.plan(BootRequest(image, cpus, Path("/dev/null"), cluster="r42"), svc.repository.image(image))
    driver = svc.driver
    assert isinstance(driver, LibvirtDriver)
    return driver.ex_plan(spec, forward_port)


def test_the_settings_table_is_read_into_typed_settings(site_file: Path) -> None:
    driver = SiteService(config.load(site_file)).driver
    assert isinstance(driver, LibvirtDriver)
    assert driver.settings == LibvirtSettings("qemu:///session", "qemu", "PCC-READY")
    assert driver.domain_type == "qemu" and driver.ready_marker is not None
    assert LibvirtSettings.from_toml(TomlReader(site_file, {}, "driver.libvirt")) == LibvirtSettings()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'domain_type = "qemu"',
            'domain_type = "xen"',
            r"\[driver\.libvirt\] domain_type: must be auto, kvm or qemu",
        ),
        (
            'domain_type = "qemu"',
            "domain_type = 1",
            r"\[driver\.libvirt\] domain_type: expected str, got int",
        ),
        (
            'ready_marker = "PCC-READY"',
            'ready_marker = "(unclosed"',
            r"\[driver\.libvirt\] ready_marker: not a regular",
        ),
        (
            'uri = "qemu:///session"',
            'url = "qemu:///session"',
            r"\[driver\.libvirt\] url: unknown setting \(known: ",
        ),
    ],
)
def test_settings_errors_name_the_file_the_table_and_the_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = site_toml(tmp_path, **{old: new})
    svc = SiteService(config.load(path))
    with pytest.raises(ConfigError, match=message) as exc:
        _ = svc.driver
    assert str(exc.value).startswith(f"{path}: [driver.libvirt] ")
    assert "\n" not in str(exc.value)


def test_num_cpus_zero_is_one_domain_reached_on_the_forwarded_port(site_file: Path) -> None:
    p = layout(site_file, 0)
    assert [n.name for n in p.nodes] == ["r42-frontend"]
    assert (p.public_address, p.ssh_port) == ("127.0.0.1", 22007)


def test_staged_files_live_in_the_cluster_directory(site_file: Path, tmp_path: Path) -> None:
    fe = layout(site_file, 0).frontend
    cdir = tmp_path / "staging" / "clusters" / "r42"
    assert fe.disks[0].path == cdir / "r42-frontend-vda.qcow2"
    assert fe.seed == cdir / "r42-frontend-seed.iso"
    assert fe.console_log == cdir / "r42-frontend-console.log"


def test_user_mode_private_nics_are_udp_links_to_the_cluster_hub(site_file: Path) -> None:
    svc = SiteService(config.load(site_file))
    spec = svc.plan(BootRequest("tiny", 2, Path("/dev/null"), cluster="r42"), svc.repository.image("tiny"))
    assert isinstance(svc.driver, LibvirtDriver)
    p = svc.driver.ex_plan(spec, 22007, links=(23000, 23001, 23002, 23003))
    fe_private = p.frontend.nics[1]
    assert (fe_private.attach, dict(fe_private.source)) == (
        "udp",
        {"address": "127.0.0.1", "port": 23000, "local_port": 23001},
    )
    assert [n.nics[0].source["local_port"] for n in p.nodes[1:]] == [23002, 23003]
    assert p.frontend.nics[0].attach == "user"


def test_domain_xml_replaces_disks_and_nics_and_keeps_other_devices(site_file: Path) -> None:
    fe = layout(site_file, 0).frontend
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
