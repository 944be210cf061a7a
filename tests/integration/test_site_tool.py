"""`pragma` at a real site: the installed tool, run as the site account, booting real VMs
under QEMU through libvirt, reached over SSH on a forwarded loopback port."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pcc.common.keys import normalize_public_key
from pcc.dev import demo
from pcc.dev.controller_env import ssh_login as ssh
from pcc.dev.site_env import REPO, TEST_IMAGE, Site
from pcc.drivers.libvirt.overlays import backing_file

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


@pytest.fixture(scope="module")
def keys(libvirt_site: Site) -> tuple[Path, Path]:
    """The scientist's key pair; the public half readable by the site account."""
    directory = libvirt_site.root / "keys"
    private = demo.make_keypair(directory / "id_ed25519", "alice@lab")
    (directory / "id_ed25519.pub").chmod(0o644)
    directory.chmod(0o755)
    return private, directory / "id_ed25519.pub"


def image_digest() -> str:
    return hashlib.sha256((TEST_IMAGE / "disk.qcow2").read_bytes()).hexdigest()


def test_check_reports_config_driver_repository_and_capacity(libvirt_site: Site) -> None:
    code, doc = libvirt_site.pragma("check")
    r = doc["result"]
    assert code == 0 and r["ok"] is True, doc
    assert r["driver"]["reachable"] is True and r["driver"]["domain_type"] == "qemu"
    assert r["repository"]["images"] == ["tiny", "tiny-legacy"]
    assert r["cpus"]["total"] == 4 and r["cpus"]["free"] <= 4
    assert r["ent_enabled"] is False and r["deployment_type"].startswith("libvirt")


def test_a_frontend_only_cluster_boots_answers_ssh_and_cleans_up_completely(
    libvirt_site: Site, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    before = image_digest()
    code, doc = libvirt_site.pragma("boot", "tiny", "0", f"key={public}", "cluster=solo")
    assert code == 0, doc
    result = doc["result"]
    assert result["cluster"] == "solo" and [n["name"] for n in result["nodes"]] == ["solo-frontend"]
    address, port = result["public_ip"], result["ssh_port"]
    assert address == "127.0.0.2" and 22100 <= port <= 22199

    code, doc = libvirt_site.pragma("list", "cluster", "solo")
    (node,) = doc["result"]
    assert (node["role"], node["state"], node["vcpus"], node["memory_mib"]) == ("frontend", "running", 1, 128)
    assert (node["public_ip"], node["ssh_port"]) == (address, port)

    assert ssh(private, address, port, "hostname") == "solo-frontend"
    overlay = libvirt_site.staging / "clusters" / "solo" / "solo-frontend-vda.qcow2"
    assert backing_file(overlay) == str((TEST_IMAGE / "disk.qcow2").resolve())

    code, doc = libvirt_site.pragma("shutdown", "solo")
    assert code == 0 and doc["result"]["stopped"] == 1
    code, doc = libvirt_site.pragma("list", "cluster", "solo")
    assert [n["state"] for n in doc["result"]] == ["stopped"]
    code, doc = libvirt_site.pragma("clean", "solo")
    assert code == 0 and doc["result"]["removed_nodes"] == 1
    assert libvirt_site.leftovers("solo") == []
    assert image_digest() == before  # the repository image was never written


def test_a_two_node_legacy_cluster_and_a_second_cluster_of_the_same_image_side_by_side(
    libvirt_site: Site, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    try:
        code, doc = libvirt_site.pragma("boot", "tiny-legacy", "1", f"key={public}", "cluster=pair")
        assert code == 0, doc
        code, other = libvirt_site.pragma("boot", "tiny-legacy", "0", f"key={public}", "cluster=twin")
        assert code == 0, other

        code, doc = libvirt_site.pragma("list", "cluster")
        nodes = {n["name"]: n for n in doc["result"]}
        assert {"pair-frontend", "pair-compute-0", "twin-frontend"} <= set(nodes)
        assert all(
            nodes[n]["state"] == "running" for n in ("pair-frontend", "pair-compute-0", "twin-frontend")
        )
        assert nodes["pair-compute-0"]["private_ip"] == "10.1.0.10"
        assert nodes["pair-frontend"]["ssh_port"] != nodes["twin-frontend"]["ssh_port"]

        pair, twin = nodes["pair-frontend"], nodes["twin-frontend"]
        assert ssh(private, pair["public_ip"], pair["ssh_port"], "hostname") == "pair-frontend"
        assert ssh(private, twin["public_ip"], twin["ssh_port"], "hostname") == "twin-frontend"
        # The frontend got the cluster description pragma_boot images expect.
        vc_out = ssh(private, pair["public_ip"], pair["ssh_port"], "cat /root/vc-out.xml")
        assert 'name="pair-compute-0"' in vc_out and 'ip="10.1.0.10"' in vc_out
        # The cluster's private network joins the frontend and its compute node.
        assert "1 packets received" in ssh(
            private, pair["public_ip"], pair["ssh_port"], "ping -c 1 -W 5 10.1.0.10"
        )

        # Booting an existing cluster again is a no-op (HTCondor may re-run a boot job).
        code, again = libvirt_site.pragma("boot", "tiny-legacy", "1", f"key={public}", "cluster=pair")
        assert code == 0 and again["result"]["message"] == "already booted"
    finally:
        for cluster in ("pair", "twin"):
            libvirt_site.pragma("clean", cluster)
    assert libvirt_site.leftovers("pair") == [] and libvirt_site.leftovers("twin") == []
    assert not any(owner in ("pair", "twin") for owner in libvirt_site.links().values())
    hubs = subprocess.run(
        ["pgrep", "-f", "pcc.drivers.libvirt.hub"], capture_output=True, text=True, check=False
    ).stdout
    assert hubs.strip() == ""


def test_shutdown_and_clean_are_idempotent_and_say_so(libvirt_site: Site) -> None:
    for verb in ("shutdown", "clean"):
        for _ in range(2):
            code, doc = libvirt_site.pragma(verb, "never-booted")
            assert code == 0
            assert doc["result"]["message"] in ("nothing was running", "nothing to clean")


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("boot", "no-such-image", "0"), 2, "unknown image 'no-such-image'"),
        (("boot", "tiny", "64"), 4, "not enough CPUs"),
        (("boot", "tiny", "0", "key=/nonexistent/key.pub"), 2, "cannot read the public key"),
        (("boot", "tiny", "0", "cluster=a;touch /tmp/pwned"), 2, "invalid cluster name"),
        (("boot", "tiny", "0", "cluster=$(reboot)"), 2, "invalid cluster name"),
        (("boot", "tiny", "-1"), 2, "NUM_CPUS must be >= 0"),
    ],
)
def test_bad_boots_fail_clearly_and_leave_nothing_behind(
    libvirt_site: Site, keys: tuple[Path, Path], args: tuple[str, ...], exit_code: int, message: str
) -> None:
    _, public = keys
    argv = [*args] if any(a.startswith("key=") for a in args) else [*args, f"key={public}"]
    domains_before, allocations_before = libvirt_site.domains(), libvirt_site.allocations()
    code, doc = libvirt_site.pragma(*argv)
    assert code == exit_code, doc
    assert doc["ok"] is False and message in doc["error"]["message"]
    assert libvirt_site.domains() == domains_before
    assert libvirt_site.allocations() == allocations_before
    assert not (libvirt_site.staging / "clusters" / "tiny").exists()
    assert not Path("/tmp/pwned").exists()


def test_generated_domain_xml_passes_virt_xml_validate(libvirt_site: Site, tmp_path: Path) -> None:
    from pcc.drivers.libvirt import LibvirtDriver
    from pcc.drivers.libvirt.domain import build_domain_xml
    from pcc.site import config
    from pcc.site.service import BootRequest, SiteService

    svc = SiteService(config.load(libvirt_site.config))
    assert isinstance(svc.driver, LibvirtDriver)
    for image, cpus in (("tiny", 0), ("tiny-legacy", 2)):
        spec = svc.plan(BootRequest(image, cpus, Path("/dev/null"), cluster="v"), svc.repository.image(image))
        plan = svc.driver.ex_plan(spec, 22100, links=range(23100, 23100 + len(spec.nodes) + 1))
        for node in plan.nodes:
            path = tmp_path / f"{node.name}.xml"
            path.write_text(build_domain_xml(node, "qemu"))
            proc = subprocess.run(
                ["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_user_data_passes_cloud_init_schema(
    libvirt_site: Site, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from pcc.site import config, context
    from pcc.site.service import BootRequest, SiteService

    svc = SiteService(config.load(libvirt_site.config))
    key = normalize_public_key(keys[1].read_text())
    plan = svc.plan(BootRequest("tiny", 1, keys[1], cluster="s"), svc.repository.image("tiny"), key=key)
    for node in plan.nodes:
        vc_out = context.vc_out_frontend(plan.nodes, key, ("10.0.2.3",), "s-frontend.local")
        path = tmp_path / f"{node.name}-user-data"
        path.write_text(context.user_data(node, key, vc_out))
        proc = subprocess.run(
            ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr


def test_volume_disks_of_a_storage_pool_are_staged_and_boot(
    libvirt_site: Site, keys: tuple[Path, Path]
) -> None:
    """The ZFS-style image form: disks named by storage pool and volume, not by path."""
    _, public = keys
    pool_dir = libvirt_site.root / "pool"
    pool_dir.mkdir(exist_ok=True)
    shutil.chown(pool_dir, libvirt_site.account.pw_name)
    repo = libvirt_site.root / "volrepo"
    (repo / "tinyvol").mkdir(parents=True, exist_ok=True)
    template = (TEST_IMAGE / "vc-in.xml").read_text()
    volume_disk = (
        "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source pool='pcc-test-pool' volume='base.qcow2'/><target dev='vda' bus='virtio'/></disk>"
    )
    text = re.sub(r"<disk type='file' device='disk'>.*?</disk>", volume_disk, template, flags=re.S)
    text = text.replace("<kernel>vmlinuz", f"<kernel>{TEST_IMAGE}/vmlinuz")
    text = text.replace("<initrd>initrd.img", f"<initrd>{TEST_IMAGE}/initrd.img")
    (repo / "tinyvol" / "vc-in.xml").write_text(text)
    (repo / "vcdb.txt").write_text("tinyvol,tinyvol/vc-in.xml\n")
    config = libvirt_site.config.read_text().replace(str(REPO / "images" / "repository"), str(repo))
    volsite_config = libvirt_site.root / "volsite.toml"
    volsite_config.write_text(config)
    volsite_config.chmod(0o644)
    libvirt_site.virsh("pool-define-as", "pcc-test-pool", "dir", "--target", str(pool_dir))
    try:
        libvirt_site.virsh("pool-start", "pcc-test-pool")
        libvirt_site.virsh("vol-create-as", "pcc-test-pool", "base.qcow2", "64M", "--format", "qcow2")
        code, doc = libvirt_site.pragma(
            "boot", "tinyvol", "0", f"key={public}", "cluster=vol", config=volsite_config
        )
        assert code == 0, doc
        assert [n["state"] for n in doc["result"]["nodes"]] == ["running"]
        overlay = libvirt_site.staging / "clusters" / "vol" / "vol-frontend-vda.qcow2"
        assert backing_file(overlay) == str(pool_dir / "base.qcow2")
    finally:
        libvirt_site.pragma("clean", "vol", config=volsite_config)
        libvirt_site.virsh("pool-destroy", "pcc-test-pool")
        libvirt_site.virsh("pool-undefine", "pcc-test-pool")
    assert libvirt_site.leftovers("vol") == []


def test_bridge_mode_domains_pass_virt_xml_validate(libvirt_site: Site, tmp_path: Path) -> None:
    from pcc.drivers.libvirt import LibvirtDriver
    from pcc.drivers.libvirt.domain import build_domain_xml
    from pcc.site import config
    from pcc.site.service import BootRequest, SiteService

    text = libvirt_site.config.read_text().replace(
        'mode = "user"', 'mode = "bridge"\nprivate_bridge = "br-priv"'
    )
    text += (
        '\n[network.public]\nrange = "192.0.2.10-192.0.2.12"\nnetmask = "255.255.255.0"\n'
        'gateway = "192.0.2.1"\ndns = ["192.0.2.53"]\nbridge = "br-pub"\n'
    )
    (tmp_path / "bridge.toml").write_text(text)
    svc = SiteService(config.load(tmp_path / "bridge.toml"))
    spec = svc.plan(
        BootRequest("tiny", 2, Path("/dev/null"), cluster="b"), svc.repository.image("tiny"), "192.0.2.10"
    )
    assert spec.network.public_address == "192.0.2.10"
    assert isinstance(svc.driver, LibvirtDriver)
    plan = svc.driver.ex_plan(spec)
    assert [n.source["bridge"] for n in plan.frontend.nics] == ["br-pub", "br-priv"]
    assert plan.nodes[1].nics[0].gateway == "10.1.0.1"
    assert (plan.public_address, plan.ssh_port) == ("192.0.2.10", 22)
    for node in plan.nodes:
        path = tmp_path / f"{node.name}.xml"
        path.write_text(build_domain_xml(node, "kvm"))
        proc = subprocess.run(
            ["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
