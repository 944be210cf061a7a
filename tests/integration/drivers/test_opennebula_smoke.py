"""The OpenNebula driver against the fake OpenNebula (tests/fakes/opennebula), through the
site tool's service: a frontend and a compute boot, list as OpenNebula reports them, hold
the right CONTEXT, and leave nothing once cleaned; the reservation mode, ENT, a refused
boot; and every document the fake answered is valid against OpenNebula's XSDs and parses
with pyone's generated bindings."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pyone
import pytest

from pcc.common.errors import DriverError
from pcc.dev import demo
from pcc.site.service import BootRequest
from tests.fakes.opennebula.seed import ENT, POOL, PUBLIC
from tests.fakes.opennebula.validation import parse_with_pyone, validate
from tests.integration.drivers.harness_opennebula import FakeSite, service_for, start_site, write_site

DOCUMENTS: list[tuple[str, str]] = []  # what every fake in this module answered


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    private = tmp_path_factory.mktemp("key") / "id_ed25519"
    demo.make_keypair(private, "scientist@lab")
    return private.with_suffix(".pub")


def _site(tmp_path: Path, **kwargs: object) -> Iterator[FakeSite]:
    site = start_site(tmp_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield site
    finally:
        DOCUMENTS.extend(site.cloud.documents)
        site.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[FakeSite]:
    yield from _site(tmp_path)


def test_a_cluster_boots_lists_holds_its_context_and_cleans_away(site: FakeSite, key: Path) -> None:
    svc, admin, cloud = site.service, site.admin, site.cloud
    result = svc.boot(BootRequest("tiny-one", 1, key, cluster="smoke"))
    assert result.message == "booted"
    nodes = {n.name: n for n in svc.list_cluster("smoke")}
    fe, co = nodes["smoke-frontend"], nodes["smoke-compute-0"]
    assert (fe.role.value, co.role.value) == ("frontend", "compute")
    assert (fe.state.value, co.state.value) == ("running", "running")
    assert (fe.vcpus, fe.memory_mib, co.vcpus, co.memory_mib) == (1, 192, 1, 128)
    assert (fe.public_ip, fe.private_ip, co.private_ip, co.public_ip) == (
        "192.0.2.20",
        "10.1.0.1",
        "10.1.0.10",
        None,
    )

    # What OpenNebula holds, asked as its administrator.
    vms = {vm.NAME: admin.one.vm.info(int(vm.ID)) for vm in admin.vms("smoke")}
    assert set(vms) == {"pcc-smoke-frontend", "pcc-smoke-compute-0"}
    front = vms["pcc-smoke-frontend"]
    ctx = dict(front.TEMPLATE["CONTEXT"])
    assert ctx["SSH_PUBLIC_KEY"] == key.read_text().strip()
    user_data, vc_out = admin.context_of("smoke", "smoke-frontend")
    assert user_data.startswith("#cloud-config") and "/root/vc-out.xml" in user_data
    assert "smoke-compute-0" in vc_out and "10.1.0.10" in vc_out
    assert ctx["ETH1_IP"] == "10.1.0.1" and ctx["NETWORK"] == "YES"
    # vc-out.xml as a file: on the context CD through CONTEXT FILES
    (vm_id,) = [i for i, vm in cloud.vms.items() if vm.name == "pcc-smoke-frontend"]
    assert cloud.vms[vm_id].context_cd == {"vc-out.xml": vc_out}
    # the frontend from a clone of the persistent image, the compute from the template
    assert front.TEMPLATE["DISK"]["IMAGE"] == "pcc-smoke-frontend-disk"
    compute = vms["pcc-smoke-compute-0"]
    assert compute.TEMPLATE["TEMPLATE_ID"] == "0" and compute.TEMPLATE["DISK"]["IMAGE"] == "tiny-compute-disk"
    assert (
        dict(compute.TEMPLATE["CONTEXT"])["START_SCRIPT"] == "echo template context"
    )  # the template's own kept
    # private NICs carry the planned MACs (vc-out.xml's)
    private = [n for n in front.TEMPLATE["NIC"] if n["NETWORK"] == "pcc-smoke-private"]
    assert [n["MAC"] for n in private] == [fe.extra["macs"][1]] and f'mac="{private[0]["MAC"]}"' in vc_out

    assert svc.boot(BootRequest("tiny-one", 1, key, cluster="smoke")).message == "already booted"
    assert svc.shutdown("smoke").counts["stopped"] == 2
    cleaned = svc.clean("smoke")
    assert cleaned.message == "cleaned"
    assert set(cleaned.counts["released"]) >= {"image pcc-smoke-frontend-disk", "network pcc-smoke-private"}
    assert admin.leftovers("smoke") == [] and svc.list_cluster("smoke") == []
    assert svc.clean("smoke").message == "nothing to clean" and svc.shutdown("smoke").counts["stopped"] == 0
    assert svc.list_cluster("never-booted") == []
    # nothing of the cluster is left in the shared networks either
    public = next(v for v in cloud.vnets.values() if v.name == PUBLIC)
    assert public.used == 0


def test_the_reservation_mode_reserves_the_planned_addresses_and_gives_them_back(
    tmp_path: Path, key: Path
) -> None:
    options = {"private_vnet": None, "private_mode": '"reserve"', "reserve_from": f'"{POOL}"'}
    for site in _site(tmp_path, options=options):
        site.service.boot(BootRequest("tiny-one", 2, key, cluster="resv"))
        nodes = {n.name: n for n in site.service.list_cluster("resv")}
        assert [nodes[f"resv-compute-{i}"].private_ip for i in (0, 1)] == ["10.1.0.10", "10.1.0.11"]
        pool = next(v for v in site.cloud.vnets.values() if v.name == POOL)
        (reservation,) = [v for v in site.cloud.vnets.values() if v.name == "pcc-resv-private"]
        assert reservation.parent == pool.id and pool.used == 3
        # Every cluster plans the same private addresses: a second one cannot reserve them.
        with pytest.raises(DriverError, match=r"reserve 10\.1\.0\.1 from pcc-private-pool"):
            site.service.boot(BootRequest("tiny-one", 1, key, cluster="second"))
        assert site.admin.leftovers("second") == [] and pool.used == 3
        site.service.clean("resv")
        assert site.admin.leftovers("resv") == [] and pool.used == 0


def test_ent_is_a_nic_on_the_configured_network(site: FakeSite, key: Path) -> None:
    svc = site.service
    svc.boot(BootRequest("tiny-one", 0, key, cluster="ent", add_ifaces=(("ent0", None),), enable_ent=True))
    (vm,) = [site.admin.one.vm.info(int(v.ID)) for v in site.admin.vms("ent")]
    assert [n["NETWORK"] for n in vm.TEMPLATE["NIC"]] == [PUBLIC, "pcc-ent-private", ENT]
    svc.clean("ent")
    assert site.admin.leftovers("ent") == []


def test_a_boot_opennebula_refuses_leaves_nothing(tmp_path: Path, key: Path) -> None:
    """CONTEXT/FILES is restricted: an account outside oneadmin may not use files_dir."""
    for site in _site(tmp_path, admin=False):
        with pytest.raises(DriverError, match="restricted attribute CONTEXT/FILES"):
            site.service.boot(BootRequest("tiny-one", 1, key, cluster="refused"))
        assert site.admin.leftovers("refused") == []


def test_a_node_that_fails_to_boot_fails_the_boot_with_opennebulas_words(tmp_path: Path, key: Path) -> None:
    """The site's table points computes at a template whose CONTEXT names a file oned cannot
    read: the VM goes to PROLOG_FAILURE, the boot fails and nothing is left."""
    options = {"files_dir": None, "images": '{ tiny-one = { compute = "template:broken" } }'}
    for site in _site(tmp_path, options=options):
        site.cloud.add_template(
            "broken", 'CPU = "1"\nMEMORY = "64"\nCONTEXT = [ FILES = "/nonexistent/motd" ]\n'
        )
        with pytest.raises(DriverError, match=r"is error \(ACTIVE/PROLOG_FAILURE\).*nonexistent/motd"):
            site.service.boot(BootRequest("tiny-one", 1, key, cluster="broken"))
        assert site.admin.leftovers("broken") == []


def test_check_reports_the_version_and_never_the_password(site: FakeSite, tmp_path: Path) -> None:
    health = site.service.driver.check()
    assert health.reachable and "OpenNebula 7.3.80" in health.message
    transport = site.service.driver.client._connect()._ServerProxy__transport
    assert transport.timeout == 60.0  # each request has one (pyone's own would be process-wide)
    gone = write_site(tmp_path / "gone", "http://127.0.0.1:9/RPC2")
    unreachable = service_for(gone).driver.check()
    assert (
        not unreachable.reachable
        and "cannot reach OpenNebula at http://127.0.0.1:9/RPC2" in unreachable.message
    )
    (site.config.parent / "one.password").write_text("wrong-password\n")
    fresh = service_for(site.config)
    bad = fresh.driver.check()
    assert not bad.reachable and "refused the credentials of user 'pcc'" in bad.message
    assert "wrong-password" not in repr(bad)


def test_the_fake_answers_as_oned_does(site: FakeSite) -> None:
    server = xmlrpc.client.ServerProxy(site.url)
    ok = server.one.vm.info("pcc:pcc-fake-secret", 99, False)
    assert ok == [False, "[one.vm.info] Error getting virtual machine [99].", 0x400, 99, -1]
    assert server.one.system.version("pcc:pcc-fake-secret") == [True, "7.3.80", 0]
    with pytest.raises(xmlrpc.client.Fault) as unknown:
        server.one.vm.nosuch("pcc:pcc-fake-secret")
    assert unknown.value.faultCode == -506
    with pytest.raises(xmlrpc.client.Fault) as mistyped:
        server.one.vm.info("pcc:pcc-fake-secret", "99")
    assert mistyped.value.faultCode == -501
    with pytest.raises(pyone.OneAuthenticationException):
        pyone.OneServer(site.url, session="pcc:nope").vmpool.info(-3, -1, -1, -1)


def test_every_document_the_fake_answered_is_valid_and_parses_with_pyone(site: FakeSite, key: Path) -> None:
    """This module's documents, and one of each kind in the states the module passes by."""
    one = site.admin.one
    site.service.boot(BootRequest("tiny-one", 1, key, cluster="docs"))
    one.vm.info(0)
    site.service.shutdown("docs")
    one.vmpool.info(-2, -1, -1, -2)  # with terminating and DONE VMs
    one.vn.info(0)
    one.template.info(0)
    site.service.clean("docs")
    one.vmpool.info(-2, -1, -1, -2)
    one.vm.info(0)  # DONE
    documents = [*DOCUMENTS, *site.cloud.documents]
    kinds = {validate(doc) for _, doc in documents}
    assert kinds == {
        "VM",
        "VM_POOL",
        "VMTEMPLATE",
        "VMTEMPLATE_POOL",
        "IMAGE",
        "IMAGE_POOL",
        "VNET",
        "VNET_POOL",
    }
    for _, doc in documents:
        parse_with_pyone(doc)
    assert len(documents) > 50
    seen = {m for m, _ in documents}
    assert {"one.vm.info", "one.vmpool.info", "one.image.info", "one.vn.info", "one.vnpool.info"} <= seen
