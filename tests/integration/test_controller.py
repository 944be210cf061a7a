"""The controller end to end: a reservation becomes a DAG that boots a real cluster at a
site reached over SSH, is watched through condor_q, extended, and torn down at its end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pcc.common.errors import CapacityError, UserInputError
from pcc.controller.model import State
from pcc.controller.reconcile import DAGMAN_CONSTRAINT
from pcc.controller.service import Actor, SiteRequest
from pcc.dev.controller_env import Controller, ssh_login
from pcc.dev.ssh_sites import SshSite

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]


@pytest.fixture
def sites(ssh_sites: dict[str, Any]) -> dict[str, SshSite]:
    return {s.name: s for s in ssh_sites["sites"]}


def test_a_reservation_boots_runs_extends_and_is_torn_down_at_its_end(
    controller: Controller, sites: dict[str, SshSite]
) -> None:
    ctl = controller
    now = time.time()
    res = ctl.service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("a", 2, 1.0)],
        int(now + 10),
        int(now + 50),
        ssh_key=ctl.user_public_key(),
    )
    ctl.reconcile()
    dag = ctl.store.reservation(res.id).dag_cluster
    assert dag is not None
    batch = ctl.condor_q("-constraint", f"ClusterId == {dag}", "-af", "JobBatchName").strip()
    assert batch == res.id
    assert ctl.state_of(res.id, "a") is State.SCHEDULED

    ctl.wait_state(res.id, "a", State.RUNNING, timeout=120)
    row = ctl.condor_q(
        "-constraint",
        f'PccReservation == "{res.id}" && DAGNodeName == "HOLD_a"',
        "-af",
        "PccReservation",
        "PccSite",
        "PccState",
        "PccNodesUp",
    ).split()
    assert row == [res.id, "a", "running", "2"]
    alloc = ctl.store.reservation(res.id).allocations[0]
    assert (alloc.nodes_up, alloc.nodes_total, alloc.frontend) == (2, 2, f"{res.id}-frontend")
    host, _, port = alloc.public_ip.partition(":")
    assert host == "127.0.0.2"
    assert ssh_login(ctl.user_key, host, int(port), "hostname") == f"{res.id}-frontend"

    extended = ctl.service.extend(Actor("alice"), res.id, res.end + 15)
    ctl.wait(
        lambda: (
            ctl.condor_q(
                "-constraint", f'PccReservation == "{res.id}" && DAGNodeName == "HOLD_a"', "-af", "PccEnd"
            ).strip()
            == str(extended.end)
        ),
        30,
        "the watch job's new end",
    )
    assert time.time() < extended.end
    ctl.wait_state(res.id, "a", State.STOPPED, timeout=extended.end - time.time() + 90)
    assert time.time() >= res.end + 15 - 2  # it ran past the original end
    assert sites["a"].site.leftovers(res.id) == []
    path = [e.to_state for e in ctl.store.events(res.id)]
    assert path == ["requested", "scheduled", "booting", "running", "stopping", "stopped"]


def test_an_over_capacity_request_is_rejected_with_the_reason(controller: Controller) -> None:
    now = time.time()
    key = controller.user_public_key()
    first = controller.service.reserve(
        Actor("alice"), "tiny", [SiteRequest("b", 3, 1.0)], int(now + 3600), int(now + 7200), ssh_key=key
    )
    with pytest.raises(CapacityError, match=r"site b is short of CPUs from .* \(1 short\)"):
        controller.service.reserve(
            Actor("bob"), "tiny", [SiteRequest("b", 2, 1.0)], int(now + 5400), int(now + 9000), ssh_key=key
        )
    controller.service.cancel(Actor("alice"), first.id)
    controller.reconcile()
    assert controller.state_of(first.id, "b") is State.CANCELLED


def test_two_sites_boot_together_and_a_site_whose_ssh_is_down_fails_alone(
    controller: Controller, sites: dict[str, SshSite]
) -> None:
    ctl = controller
    now = time.time()
    key = ctl.user_public_key()
    both = ctl.service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("a", 1, 0.5), SiteRequest("b", 1, 0.5)],
        int(now + 5),
        int(now + 40),
        ssh_key=key,
    )
    ctl.store.set_site_images("c", ["tiny"])  # c reported its images once, before its SSH went down
    broken = ctl.service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("a", 1, 0.5), SiteRequest("c", 1, 0.5)],
        int(now + 5),
        int(now + 40),
        ssh_key=key,
    )
    ctl.wait(
        lambda: ctl.state_of(both.id, "a") is State.RUNNING and ctl.state_of(both.id, "b") is State.RUNNING,
        120,
        "both sites of the two-site reservation running",
    )
    for name, address in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        alloc = next(x for x in ctl.store.reservation(both.id).allocations if x.site == name)
        host, _, port = alloc.public_ip.partition(":")
        assert host == address
        assert ssh_login(ctl.user_key, host, int(port), "hostname") == f"{both.id}-frontend"

    ctl.wait_state(broken.id, "c", State.FAILED, timeout=120)
    failed = next(x for x in ctl.store.reservation(broken.id).allocations if x.site == "c")
    assert "attempt 3/3" in failed.reason and "cannot reach 127.0.0.4:2222" in failed.reason
    # The other site is unaffected: its cluster ran (on a loaded machine, c's three attempts
    # may outlast the 35 s window, so a may already be stopping by now).
    ctl.wait(
        lambda: any(e.site == "a" and e.to_state == "running" for e in ctl.store.events(broken.id)),
        60,
        f"{broken.id}@a to have run",
    )

    for rid in (both.id, broken.id):
        ctl.wait_state(rid, "a", State.STOPPED, timeout=120)
    ctl.wait_state(both.id, "b", State.STOPPED, timeout=60)
    for rid in (both.id, broken.id):
        assert sites["a"].site.leftovers(rid) == [] and sites["b"].site.leftovers(rid) == []


def test_cancel_before_begin_boots_nothing_and_cancel_while_running_tears_down(
    controller: Controller, sites: dict[str, SshSite]
) -> None:
    ctl = controller
    now = time.time()
    key = ctl.user_public_key()
    later = ctl.service.reserve(
        Actor("alice"), "tiny", [SiteRequest("b", 1, 0.5)], int(now + 600), int(now + 900), ssh_key=key
    )
    soon = ctl.service.reserve(
        Actor("alice"), "tiny", [SiteRequest("b", 1, 0.5)], int(now + 3), int(now + 600), ssh_key=key
    )
    ctl.reconcile()
    later_dag = ctl.store.reservation(later.id).dag_cluster
    assert ctl.state_of(later.id, "b") is State.SCHEDULED
    ctl.service.cancel(Actor("alice"), later.id)
    ctl.wait(
        lambda: not ctl.condor_q("-constraint", f"ClusterId == {later_dag}", "-af", "ClusterId").strip(),
        60,
        "the cancelled DAG to leave the queue",
    )
    starts = ctl.reconciler.condor.history(
        f'DAGManJobId == {later_dag} && DAGNodeName == "BOOT_b"', ["NumJobStarts"]
    )
    assert all(not row.get("NumJobStarts") for row in starts)
    assert [e.to_state for e in ctl.store.events(later.id)] == ["requested", "scheduled", "cancelled"]

    ctl.wait_state(soon.id, "b", State.RUNNING, timeout=120)
    ctl.service.cancel(Actor("alice"), soon.id)
    ctl.wait_state(soon.id, "b", State.STOPPED, timeout=120)
    assert sites["b"].site.leftovers(soon.id) == []
    assert [e.to_state for e in ctl.store.events(soon.id)][-2:] == ["stopping", "stopped"]


def test_pcc_serve_killed_while_a_cluster_boots_converges_to_one_dag_and_one_cluster(
    controller: Controller, sites: dict[str, SshSite]
) -> None:
    ctl = controller
    env = {**ctl.pool.client_env(), "PCC_POLL_SECONDS": "1", "PCC_USER": "alice"}
    pcc = [str(Path(sys.executable).parent / "pcc"), "--config", str(ctl.config)]
    key = ctl.user_key.with_suffix(".pub")
    reserved = subprocess.run(
        [
            *pcc,
            "reserve",
            "--site",
            "a:2",
            "--image",
            "tiny",
            "--begin",
            "now+2s",
            "--duration",
            "5m",
            "--key",
            str(key),
            "-o",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rid = json.loads(reserved.stdout)["id"]

    def serve() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*pcc, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
        )

    def state() -> State:
        return ctl.state_of(rid, "a")

    first = serve()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and state() is not State.BOOTING:
            time.sleep(0.2)
        assert state() is State.BOOTING
    finally:
        first.kill()  # SIGKILL in the middle of the boot
        first.wait()
    second = serve()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and state() is not State.RUNNING:
            time.sleep(0.5)
        assert state() is State.RUNNING
        dags = ctl.condor_q(
            "-constraint", f'JobBatchName == "{rid}" && {DAGMAN_CONSTRAINT}', "-af", "ClusterId"
        )
        assert len(dags.split()) == 1
        _code, doc = sites["a"].site.pragma("list", "cluster", rid)
        assert sorted(n["name"] for n in doc["result"]) == [f"{rid}-compute-0", f"{rid}-frontend"]
        cancelled = subprocess.run(
            [*pcc, "cancel", rid], env=env, capture_output=True, text=True, check=False
        )
        assert cancelled.returncode == 0, cancelled.stderr
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and state() is not State.STOPPED:
            time.sleep(0.5)
        assert state() is State.STOPPED
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert sites["a"].site.leftovers(rid) == []


def test_a_cluster_no_reservation_accounts_for_is_flagged_as_an_orphan(
    controller: Controller, sites: dict[str, SshSite]
) -> None:
    key = controller.user_key.with_suffix(".pub")
    key.chmod(0o644)
    site = sites["b"].site
    stray_key = site.root / "stray.pub"
    stray_key.write_text(key.read_text())
    stray_key.chmod(0o644)
    code, doc = site.pragma("boot", "tiny", "0", f"key={stray_key}", "cluster=stray")
    assert code == 0, doc
    try:
        orphans = controller.orphans()
        assert ("b", "stray") in orphans
        assert not any(site_name == "a" for site_name, _ in orphans)
    finally:
        site.pragma("clean", "stray")


def test_an_image_the_site_does_not_have_is_rejected(controller: Controller) -> None:
    now = time.time()
    with pytest.raises(
        UserInputError, match=r"unknown image 'centos7' at site a \(it has: tiny, tiny-legacy\)"
    ):
        controller.service.reserve(
            Actor("alice"),
            "centos7",
            [SiteRequest("a", 1, 0.5)],
            int(now + 600),
            int(now + 900),
            ssh_key=controller.user_public_key(),
        )


def test_probes_record_site_health_publish_site_ads_and_metrics_that_promtool_accepts(
    controller: Controller, tmp_path: Path
) -> None:
    import classad2
    import htcondor2
    from prometheus_client import generate_latest

    from pcc.controller.metrics import REGISTRY

    gone = classad2.ClassAd({"MyType": "PccSite", "Name": "gone", "PccHealth": "up"})
    htcondor2.Collector().advertise([gone], "UPDATE_AD_GENERIC")  # a site since removed from the config
    probes = controller.probe()
    assert {p.site: p.health for p in probes} == {"a": "up", "b": "up", "c": "down"}
    health = controller.store.site_health()
    assert health["c"]["health"] == "down" and "cannot reach 127.0.0.4:2222" in health["c"]["reason"]
    assert any(e.site == "c" and e.to_state == "down" for e in controller.store.events())

    rows = controller.condor_status(
        "-any", "-constraint", 'MyType == "PccSite"', "-af", "Name", "PccHealth", "PccFreeCpus"
    )
    sites = {line.split()[0]: line.split()[1:] for line in rows.splitlines()}
    assert sites["a"][0] == "up" and int(sites["a"][1]) <= 4
    assert sites["c"][0] == "down" and "gone" not in sites

    exposition = generate_latest(REGISTRY).decode()
    assert 'pcc_site_up{site="c"} 0.0' in exposition and 'pcc_site_up{site="a"} 1.0' in exposition
    (tmp_path / "metrics.txt").write_text(exposition)
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_reset_store_never_adopts_an_older_dag_with_the_same_reservation_id(
    controller: Controller, tmp_path: Path
) -> None:
    from pcc.controller.reconcile import Reconciler
    from pcc.controller.service import Service
    from pcc.controller.store import Store

    old = controller.store.reservation("r00001")  # the module's first reservation, long finished
    assert old.dag_cluster is not None
    fresh = Store(tmp_path / "reset.db")
    fresh.set_site_images("a", ["tiny"])
    service = Service(controller.settings, fresh)
    now = time.time()
    res = service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("a", 1, 0.5)],
        int(now + 600),
        int(now + 900),
        ssh_key=controller.user_public_key(),
    )
    assert res.id == "r00001"
    reconciler = Reconciler(
        controller.settings,
        fresh,
        controller.reconciler.condor,
        controller.reconciler.env,
        controller.reconciler.dag_owner,
    )
    assert reconciler.reconcile_once().submitted == ["r00001"]
    new_dag = fresh.reservation(res.id).dag_cluster
    assert new_dag is not None and new_dag != old.dag_cluster
    service.cancel(Actor("alice"), res.id)
    reconciler.reconcile_once()
    assert fresh.reservation(res.id).allocations[0].state is State.CANCELLED
