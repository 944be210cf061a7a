"""The driver interface's point, end to end: the controller needs no change for a new kind
of site. One reservation asks for a cluster at the libvirt site a and one at an EC2 site
(its `pragma` runs the ec2 driver against a real moto_server, reached over the site's own
sshd like any other site); both boot, run and are torn down together by the real pool's
DAG, and EC2 holds nothing of the cluster afterwards. One VM boots (at site a)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcc.condor.pool import PersonalPool
from pcc.controller.model import State
from pcc.controller.service import Actor, SiteRequest
from pcc.dev import controller_env, demo
from pcc.dev import ssh_sites as ssh_sites_mod
from pcc.dev.moto_server import MotoServer
from tests.conftest import leave_no_dags
from tests.integration.drivers import harness_ec2

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]

ROOT = Actor("root", admin=True)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_kinds(
    condor_pool: PersonalPool, ssh_sites: dict[str, Any], moto: MotoServer
) -> Iterator[controller_env.Controller]:
    """A controller over site a (libvirt) and site e (EC2 through moto, behind its own sshd)."""
    root = Path(tempfile.mkdtemp(prefix="ec2site-", dir=condor_pool.local_dir.parent))
    root.chmod(0o755)
    controller_pub = Path(f"{ssh_sites['key']}.pub").read_text()
    site_e = ssh_sites_mod.make_site(root, "e", "127.0.0.5", (22500, 22549), controller_pub)
    client = moto.client()
    harness_ec2.register_ami(client, harness_ec2.AMI_NAME)
    compute_ami = harness_ec2.register_ami(client, harness_ec2.COMPUTE_AMI_NAME)
    config = harness_ec2.write_site(site_e.site.root, moto.url, compute_ami)
    assert config == site_e.site.config
    controller_env.chown_tree(site_e.site.root, site_e.site.account.pw_name)
    state = Path(tempfile.mkdtemp(prefix="ctl-", dir=condor_pool.local_dir.parent))
    state.chmod(0o755)
    shutil.copy(ssh_sites["key"], state / "id_ed25519")
    site_a = next(s for s in ssh_sites["sites"] if s.name == "a")
    (state / "known_hosts").write_text(f"{site_a.known_hosts_line}\n{site_e.known_hosts_line}\n")
    user_key = state / "user" / "id_ed25519"
    demo.make_keypair(user_key, "alice@lab")
    ctl = controller_env.make_controller(
        state, condor_pool, [site_a, site_e], state / "id_ed25519", state / "known_hosts", user_key
    )
    controller_env.chown_tree(state, condor_pool.daemon_user().pw_name)
    if os.geteuid() == 0:
        for path in (user_key.parent, user_key, user_key.with_suffix(".pub")):
            os.chown(path, 0, 0)
    try:
        yield ctl
    finally:
        leave_no_dags(ctl)
        ssh_sites_mod.stop_site(site_e)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def test_one_reservation_at_a_libvirt_site_and_an_ec2_site_boots_runs_and_ends_together(
    two_kinds: controller_env.Controller, moto: MotoServer
) -> None:
    ctl = two_kinds
    health = {r.entry.name: r.health for r in ctl.service.sites(ROOT)}
    assert health == {"a": "up", "e": "up"}, health
    ctl.service.add_user(ROOT, "alice", "alice@lab.org", ctl.user_public_key())
    now = int(time.time())
    res = ctl.service.reserve(
        Actor("alice"), "tiny", [SiteRequest("a", 2, 0.5), SiteRequest("e", 2, 0.5)], now, now + 900
    )
    started = time.monotonic()
    for site in ("a", "e"):
        ctl.wait_state(res.id, site, State.RUNNING, timeout=300)
    print(f"\nlibvirt + EC2 reservation running in {time.monotonic() - started:.0f} s")
    running = ctl.service.reservation(ROOT, res.id)
    ec2 = next(a for a in running.allocations if a.site == "e")
    assert (ec2.nodes_up, ec2.nodes_total) == (2, 2) and ec2.public_ip, ec2
    client = moto.client()
    frontend = harness_ec2.instance_of(client, res.id, f"{res.id}-frontend")
    assert (
        frontend["State"]["Name"] == "running"
        and frontend.get("PublicIpAddress") == ec2.public_ip.split(":")[0]
    )
    assert harness_ec2.leftovers(client, res.id)  # it holds the cluster now

    ctl.service.cancel(Actor("alice"), res.id)
    for site in ("a", "e"):
        ctl.wait_state(res.id, site, State.STOPPED, timeout=180)
    assert harness_ec2.leftovers(client, res.id) == []
