"""The image repository: both vc-in.xml formats, and hostile or broken files rejected by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pcc.common.errors import UserInputError
from pcc.site.repository import Repository, RepositoryError, parse_vc_in

SAMPLE = Path(__file__).resolve().parents[3] / "images" / "repository"


def test_the_sample_repository_lists_both_formats() -> None:
    images = {i.name: i for i in Repository(SAMPLE).images()}
    assert set(images) == {"tiny", "tiny-legacy"}
    assert images["tiny"].format == "local-beowulf"
    assert images["tiny-legacy"].format == "pragma-0.1"


def test_local_beowulf_domains_give_cpus_memory_and_file_disks() -> None:
    image = Repository(SAMPLE).image("tiny")
    assert (image.frontend.vcpus, image.frontend.memory_mib) == (1, 128)
    (disk,) = image.frontend.disks
    assert (disk.kind, disk.format, disk.target) == ("file", "qcow2", "vda")
    assert disk.path == SAMPLE / "tiny" / "disk.qcow2"
    assert image.compute is not None and image.compute.wait_for is None


def test_the_legacy_form_reads_boot_dependency_and_networks() -> None:
    image = Repository(SAMPLE).image("tiny-legacy")
    assert image.compute is not None
    assert (image.compute.wait_for, image.compute.wait_seconds) == ("frontend", 1.0)
    assert image.private_network == ("10.1.0.1", "255.255.255.0")
    assert image.public_iface == "eth0"
    assert image.extra["driver"] == "libvirt"
    assert image.frontend.disks[0].path == SAMPLE / "tiny" / "disk.qcow2"


def test_an_unknown_image_names_the_known_ones() -> None:
    with pytest.raises(UserInputError, match=r"unknown image 'nope' \(this site has: tiny, tiny-legacy\)"):
        Repository(SAMPLE).image("nope")


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "vc-in.xml"
    path.write_text(body)
    return path


DOMAIN = """<domain type='kvm'><vcpu>2</vcpu><memory unit='GiB'>1</memory><os><type>hvm</type></os>
<devices>{disks}</devices></domain>"""


def test_volume_disks_of_the_zfs_variant_are_understood(tmp_path: Path) -> None:
    disks = (
        "<disk type='volume' device='disk'><driver name='qemu' type='raw'/>"
        "<source pool='tank' volume='vc/fe'><host name='nas1'/></source><target dev='vda'/></disk>"
    )
    path = write(tmp_path, f"<vc type='Local Beowulf'><frontend>{DOMAIN.format(disks=disks)}</frontend></vc>")
    image = parse_vc_in(path, "z")
    (disk,) = image.frontend.disks
    assert (disk.kind, disk.pool, disk.volume, disk.host) == ("volume", "tank", "vc/fe", "nas1")
    assert (image.frontend.vcpus, image.frontend.memory_mib) == (2, 1024)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE vc [<!ENTITY x SYSTEM "file:///etc/passwd">]><vc>&x;</vc>',
            "DOCTYPE",
        ),
        ('<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><vc>&b;</vc>', "DOCTYPE"),
        ("<vc type='Local Beowulf'><frontend>", "malformed XML"),
        (
            "<vc type='Local Beowulf'><frontend><domain><os/><devices/></domain></frontend></vc>",
            "<frontend><domain> has no disk",
        ),
        (
            "<vc type='Local Beowulf'><frontend><domain><devices><disk type='network' device='disk'>"
            "<source protocol='nbd'/></disk></devices></domain></frontend></vc>",
            "<frontend> disk type 'network' is not supported",
        ),
        (
            "<vc type='Local Beowulf'><frontend><domain><devices><disk type='file' device='disk'>"
            "<driver type='vmdk'/><source file='a'/></disk></devices></domain></frontend></vc>",
            "format 'vmdk'",
        ),
        ("<vc type='Local Beowulf'><compute/></vc>", "<vc> has no <frontend>"),
        ("<vc version='9'><frontend/></vc>", "has no <domain>"),
        ("<cluster/>", "root element is <cluster>"),
    ],
)
def test_hostile_or_broken_files_are_rejected_naming_file_and_element(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(RepositoryError) as exc:
        parse_vc_in(path, "x")
    assert str(path) in str(exc.value)
    assert message in str(exc.value)


def test_vcdb_entries_must_be_well_formed_and_stay_inside(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE, tmp_path / "repo")
    (tmp_path / "repo" / "vcdb.txt").write_text("ok,tiny/vc-in.xml\nevil,../../etc/passwd\n")
    with pytest.raises(RepositoryError, match=r"vcdb.txt:2: '../../etc/passwd' points outside"):
        Repository(tmp_path / "repo").entries()
    (tmp_path / "repo" / "vcdb.txt").write_text("no-comma-here\n")
    with pytest.raises(RepositoryError, match=r"vcdb\.txt:1: expected 'name,relative/path/vc-in\.xml'"):
        Repository(tmp_path / "repo").entries()


def test_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="cannot read the repository index"):
        Repository(tmp_path).entries()
