"""Waiting costs no process and one monitor per site, on real parts: the session's pool,
real sshds in front of sites with the `simulated` driver (the real site tool, nothing
booted), and `pcc serve` where the controller must be gone.

Sites: `slow` (each boot takes 15 s) and `fast` share one sshd and site account on
127.0.0.7; `other` has its own on 127.0.0.8, and the last test kills it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pcc.condor.adapter import CondorAdapter, JobStatus
from pcc.condor.monitors import monitor_constraint
from pcc.condor.pool import PersonalPool
from pcc.controller.model import State
from pcc.controller.service import Actor, SiteRequest
from pcc.dev import controller_env, demo
from pcc.dev.simulated_sites import SimulatedSites, simulated_site_text, start_simulated_sites
from pcc.dev.site_env import as_site_user
from tests.conftest import leave_no_dags

ALICE = Actor("alice")


@pytest.fixture(scope="module")
def sim(condor_pool: PersonalPool) -> Iterator[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="simsites-", dir=condor_pool.local_dir.parent))
    root.chmod(0o755)
    controller_key = demo.make_keypair(root / "controller" / "id_ed25519", "pcc-controller")
    pub = Path(f"{controller_key}.pub").read_text()
    shared = start_simulated_sites(root / "shared", ["fast", "slow"], "127.0.0.7", pub)
    (shared.configs["slow"]).write_text(
        simulated_site_text("slow", shared.root / "slow" / "staging", "127.0.0.7", 4096, 15.0, 64)
    )
    other = start_simulated_sites(root / "other", ["other"], "127.0.0.8", pub, account="pcc-sim2")
    state = Path(tempfile.mkdtemp(prefix="ctl-", dir=condor_pool.local_dir.parent))
    state.chmod(0o755)
    shutil.copy(controller_key, state / "id_ed25519")
    (state / "known_hosts").write_text(f"{shared.known_hosts_line}\n{other.known_hosts_line}\n")
    user_key = state / "user" / "id_ed25519"
    demo.make_keypair(user_key, "alice@lab")
    extra = "\n" + "\n".join(
        s.controller_toml(state / "id_ed25519", state / "known_hosts") for s in (shared, other)
    )
    ctl = controller_env.make_controller(
        state, condor_pool, [], state / "id_ed25519", state / "known_hosts", user_key, extra_sites=extra
    )
    controller_env.chown_tree(state, condor_pool.daemon_user().pw_name)
    try:
        yield {"ctl": ctl, "shared": shared, "other": other, "key": user_key.with_suffix(".pub").read_text()}
    finally:
        leave_no_dags(ctl, timeout=600)
        for s in (shared, other):
            s.stop()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def reserve(sim: dict[str, Any], site: str, seconds: float = 3600, begin_in: float = 0) -> str:
    now = time.time()
    res = sim["ctl"].service.reserve(
        ALICE,
        "tiny",
        [SiteRequest(site, 1, 0.5)],
        int(now + begin_in),
        int(now + begin_in + seconds),
        ssh_key=sim["key"],
    )
    return res.id


def hold_ad(ctl: controller_env.Controller, rid: str, site: str) -> dict[str, Any] | None:
    ads = CondorAdapter().query(
        f'PccReservation == "{rid}" && DAGNodeName == "HOLD_{site}" && '
        f'PccController == "{ctl.settings.controller_id}"',
        [
            "ClusterId",
            "ProcId",
            "JobStatus",
            "PccEnd",
            "PccState",
            "PccMessage",
            "PccNodesUp",
            "PccNodesTotal",
        ],
    )
    return ads[0] if ads else None


def until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` (no reconcile pass: what it sees is HTCondor's and the monitors')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def condor_tool(ctl: controller_env.Controller, tool: str, *args: str) -> str:
    proc = subprocess.run(
        [str(ctl.pool.bin_dir / tool), *args], env=ctl.pool.client_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def pragma(sites: SimulatedSites, site: str, *args: str) -> Any:
    """The site tool at a simulated site, as its account runs it (not through PCC)."""
    argv = ["pragma", "--json", "--config", str(sites.configs[site]), *args]
    proc = as_site_user(pwd.getpwnam(sites.account), argv, timeout=60)
    return json.loads(proc.stdout)["result"]


def site_clusters(sites: SimulatedSites, site: str) -> set[str]:
    return {n["cluster"] for n in pragma(sites, site, "list", "cluster")}


def test_an_extension_during_the_boot_reaches_the_hold_node_and_one_after_it_is_an_edit(
    sim: dict[str, Any],
) -> None:
    ctl = sim["ctl"]
    rid = reserve(sim, "slow", seconds=600)
    ctl.wait_state(rid, "slow", State.BOOTING, timeout=120)
    first = ctl.store.reservation(rid).end + 900
    ctl.service.extend(ALICE, rid, first)
    ctl.reconcile()  # writes the end file; from here on no pass runs until the HOLD node exists
    assert hold_ad(ctl, rid, "slow") is None, "the boot ended before the extension: no test of it"
    ad = until(lambda: hold_ad(ctl, rid, "slow"), 90, "the HOLD node")
    assert ad["PccEnd"] == first and ad["JobStatus"] == JobStatus.HELD
    ctl.wait_state(rid, "slow", State.RUNNING, timeout=60)
    second = first + 600
    ctl.service.extend(ALICE, rid, second)
    ctl.reconcile()
    assert hold_ad(ctl, rid, "slow")["PccEnd"] == second  # type: ignore[index]
    ctl.service.cancel(ALICE, rid)
    ctl.wait_state(rid, "slow", State.STOPPED, timeout=120)


def test_the_end_is_honoured_with_pcc_serve_killed(sim: dict[str, Any]) -> None:
    ctl = sim["ctl"]
    served = controller_env.serve_controller(ctl)
    try:
        rid = reserve(sim, "fast", seconds=40)
        end = ctl.store.reservation(rid).end
        until(lambda: ctl.state_of(rid, "fast") is State.RUNNING, 60, "running under pcc serve")
    finally:
        served.proc.kill()  # SIGKILL: no goodbye, no last pass
        served.proc.wait()
    assert rid in site_clusters(sim["shared"], "fast")
    until(lambda: rid not in site_clusters(sim["shared"], "fast"), end - time.time() + 60, "the teardown")
    torn_down = time.time()
    assert torn_down >= end
    # Torn down by its HOLD node, which the schedd itself released at the end (its ad reaches
    # the history once the job has written its last state and left the queue).
    hold = until(
        lambda: CondorAdapter().history(
            f'PccReservation == "{rid}" && DAGNodeName == "HOLD_fast"', ["PccState", "JobCurrentStartDate"], 1
        ),
        30,
        "the HOLD node in the history",
    )
    assert hold[0]["PccState"] == "stopped" and hold[0]["JobCurrentStartDate"] >= end
    ctl.wait_state(rid, "fast", State.STOPPED, timeout=60)  # the controller catches up later


@pytest.mark.parametrize("tool", ["condor_release", "condor_rm"])
def test_a_hold_job_released_or_removed_early_by_an_operator_still_tears_down(
    sim: dict[str, Any], tool: str
) -> None:
    ctl = sim["ctl"]
    rid = reserve(sim, "fast")
    ctl.wait_state(rid, "fast", State.RUNNING, timeout=120)
    ad = hold_ad(ctl, rid, "fast")
    assert ad is not None
    condor_tool(ctl, tool, f"{ad['ClusterId']}.{ad['ProcId']}")
    ctl.wait_state(rid, "fast", State.STOPPED, timeout=120)
    assert rid not in site_clusters(sim["shared"], "fast")


def monitor_of(ctl: controller_env.Controller, site: str) -> dict[str, Any] | None:
    ads = CondorAdapter().query(
        f'{monitor_constraint(ctl.settings.controller_id)} && PccSite == "{site}"',
        ["ClusterId", "ProcId", "JobStatus", "NumJobStarts", "PccLogins"],
    )
    return ads[0] if ads else None


def test_a_killed_monitor_is_restarted_by_htcondor_and_status_resumes(sim: dict[str, Any]) -> None:
    ctl = sim["ctl"]
    rid = reserve(sim, "fast")
    ctl.wait_state(rid, "fast", State.RUNNING, timeout=120)
    before = monitor_of(ctl, "fast")
    assert before is not None and before["JobStatus"] == JobStatus.RUNNING
    pids = subprocess.run(
        ["pgrep", "-f", "pcc-job monitor --site fast$"], capture_output=True, text=True
    ).stdout.split()
    mine = [p for p in pids if str(ctl.config) in Path(f"/proc/{p}/environ").read_text(errors="replace")]
    assert len(mine) == 1, pids
    os.kill(int(mine[0]), signal.SIGKILL)
    again = until(
        lambda: (
            (m := monitor_of(ctl, "fast"))
            and m["JobStatus"] == JobStatus.RUNNING
            and m.get("NumJobStarts", 0) > before.get("NumJobStarts", 0)
            and m
        ),
        60,
        "HTCondor to start the monitor again",
    )
    assert again["ClusterId"] == before["ClusterId"]  # the same job, not a new one from serve
    # The site stops the cluster's nodes behind PCC's back: the restarted monitor says so.
    pragma(sim["shared"], "fast", "shutdown", rid)
    until(lambda: (hold_ad(ctl, rid, "fast") or {}).get("PccNodesUp") == 0, 60, "the monitor's new status")
    ctl.service.cancel(ALICE, rid)
    ctl.wait_state(rid, "fast", State.STOPPED, timeout=120)


def test_250_concurrent_reservations_at_a_simulated_site_all_reach_running(sim: dict[str, Any]) -> None:
    """Past HTCondor's default cap of 200 running DAGMans per owner."""
    ctl = sim["ctl"]
    rids = [reserve(sim, "fast", begin_in=30) for _ in range(250)]
    live = set(rids)

    def all_running() -> bool:
        live.difference_update(r for r in list(live) if ctl.state_of(r, "fast") is State.RUNNING)
        return not live

    ctl.wait(all_running, 900, "250 reservations to run", interval=5)
    # One monitor answered for all 250 over the one login it kept the whole time.
    monitor = monitor_of(ctl, "fast")
    assert monitor is not None and monitor.get("PccLogins") == 1, monitor
    for rid in rids:
        ctl.service.cancel(ALICE, rid)
    stopping = set(rids)
    ctl.wait(
        lambda: (
            not stopping.difference_update(
                r for r in list(stopping) if ctl.state_of(r, "fast") is State.STOPPED
            )
            and not stopping
        ),
        900,
        "250 teardowns",
        interval=5,
    )


def test_a_dead_site_is_marked_unreachable_and_the_other_sites_reservations_stay_running(
    sim: dict[str, Any],
) -> None:
    ctl = sim["ctl"]
    fast, far = reserve(sim, "fast"), reserve(sim, "other")
    ctl.wait_state(fast, "fast", State.RUNNING, timeout=120)
    ctl.wait_state(far, "other", State.RUNNING, timeout=120)
    other: SimulatedSites = sim["other"]
    assert other.sshd_pid is not None
    os.kill(other.sshd_pid, signal.SIGTERM)  # no new logins ...
    subprocess.run(["pkill", "-KILL", "-u", other.account], check=False)  # ... and the kept one is cut
    ad = until(
        lambda: (a := hold_ad(ctl, far, "other")) and a.get("PccState") == "unreachable" and a,
        90,
        "site other to be marked unreachable",
    )
    assert ad["PccMessage"].startswith("site unreachable: ")
    for _ in range(5):
        ctl.reconcile()
        time.sleep(1)
    assert ctl.state_of(far, "other") is State.RUNNING  # never an end
    assert ctl.state_of(fast, "fast") is State.RUNNING
    assert (hold_ad(ctl, fast, "fast") or {}).get("PccState") == "running"
