"""Shared fixtures: a real personal HTCondor pool per test session, in its own directory."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcc.condor.adapter import CondorAdapter, use_pool
from pcc.condor.pool import PersonalPool
from pcc.controller.model import TERMINAL
from pcc.controller.service import Actor
from pcc.controller.settings import Settings
from pcc.dev import controller_env, demo, site_env
from pcc.dev import ssh_sites as ssh_sites_mod

REPO = Path(__file__).resolve().parent.parent
# Plain `pytest` in a checkout finds the install `make` made (the Makefile sets the same).
os.environ.setdefault("PCC_STATE_DIR", str(REPO / ".state"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        if parts[0] == "unit":
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def condor_pool() -> Iterator[PersonalPool]:
    """A personal pool started for this test session (own config, own ports), torn down after."""
    installed = Settings.from_env().embedded_pool()
    if installed.installed_version is None:
        pytest.fail(f"HTCondor is not installed in {installed.prefix}: run `make install` (make test does)")
    root = installed.local_dir.parent / "test-pools"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    local = Path(tempfile.mkdtemp(prefix="pool-", dir=root))
    os.chmod(local, 0o755)
    pool = PersonalPool(prefix=installed.prefix, local_dir=local, settings={"num_cpus": "4"})
    pool.start(timeout=90)
    use_pool(pool.config_file, pool.client_env().get("CONDOR_IDS"))
    try:
        yield pool
    finally:
        pool.stop()
        shutil.rmtree(local, ignore_errors=True)


@pytest.fixture(scope="session")
def condor(condor_pool: PersonalPool) -> CondorAdapter:
    return CondorAdapter()


@pytest.fixture
def job_dir(condor_pool: PersonalPool, request: pytest.FixtureRequest) -> Path:
    """A directory the pool's jobs (running as the daemons' user) can write to."""
    path = condor_pool.local_dir / "jobs" / request.node.name[:80]
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(condor_pool.service_user)
        for p in (path.parent, path):
            os.chown(p, user.pw_uid, user.pw_gid)
    return path


@pytest.fixture(scope="session")
def libvirt_site() -> Iterator[site_env.Site]:
    """A site run by an unprivileged account with its own libvirt session and the test image."""
    if not (site_env.TEST_IMAGE / "initrd.img").exists():
        pytest.fail(
            f"the test image is not built in {site_env.TEST_IMAGE}: run `make image` (make test does)"
        )
    account = site_env.site_account()
    installed = Settings.from_env().embedded_pool()
    root = Path(tempfile.mkdtemp(prefix="site-", dir=installed.local_dir.parent.parent))
    os.chmod(root, 0o755)
    os.chown(root, account.pw_uid, account.pw_gid)
    daemon = site_env.start_libvirt_session(account)
    site = site_env.Site(root=root, account=account, forward_address="127.0.0.2", ports=(22100, 22199))
    site.write_config()
    try:
        yield site
    finally:
        for domain in site.domains():  # a failed test must not leak VMs
            site.virsh("destroy", domain) if "running" in site.virsh("domstate", domain) else None
            site.virsh("undefine", domain)
        site_env.stop_process(daemon)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_sites(condor_pool: PersonalPool) -> Iterator[dict[str, Any]]:
    """Sites a (127.0.0.2) and b (127.0.0.3) behind their own sshd, and the controller's key."""
    if not (site_env.TEST_IMAGE / "initrd.img").exists():
        pytest.fail(
            f"the test image is not built in {site_env.TEST_IMAGE}: run `make image` (make test does)"
        )
    root = Path(tempfile.mkdtemp(prefix="sites-", dir=condor_pool.local_dir.parent))
    os.chmod(root, 0o755)
    keys = root / "controller"
    demo.make_keypair(keys / "id_ed25519", "pcc-controller")
    controller_pub = (keys / "id_ed25519.pub").read_text()
    sites = []
    try:
        for name, address, ports in (("a", "127.0.0.2", (22400, 22449)), ("b", "127.0.0.3", (22450, 22499))):
            sites.append(ssh_sites_mod.make_site(root, name, address, ports, controller_pub))
        (keys / "known_hosts").write_text("".join(s.known_hosts_line + "\n" for s in sites))
        yield {"root": root, "sites": sites, "key": keys / "id_ed25519", "known_hosts": keys / "known_hosts"}
    finally:
        for s in sites:
            ssh_sites_mod.stop_site(s)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def controller(condor_pool: PersonalPool, ssh_sites: dict[str, Any]) -> Iterator[controller_env.Controller]:
    """A controller with its own state directory over the session's pool and SSH sites."""
    state = Path(tempfile.mkdtemp(prefix="ctl-", dir=condor_pool.local_dir.parent))
    os.chmod(state, 0o755)
    owner = condor_pool.daemon_user().pw_name
    shutil.copy(ssh_sites["key"], state / "id_ed25519")  # read by the jobs, as the pool's user
    shutil.copy(ssh_sites["known_hosts"], state / "known_hosts")
    user_key = state / "user" / "id_ed25519"
    user_key.parent.mkdir()
    demo.make_keypair(user_key, "alice@lab")
    # Site c has no SSH server: its address refuses every connection.
    down = (
        '[[sites]]\nname = "c"\nhost = "127.0.0.4"\nport = 2222\nuser = "pcc-c"\n'
        f'key = "{state / "id_ed25519"}"\nknown_hosts = "{state / "known_hosts"}"\ncpus = 4\n'
        "memory_gb = 2\n"
    )
    ctl = controller_env.make_controller(
        state,
        condor_pool,
        ssh_sites["sites"],
        state / "id_ed25519",
        state / "known_hosts",
        user_key,
        extra_sites=down,
    )
    controller_env.chown_tree(state, owner)
    if os.geteuid() == 0:  # the scientist's key stays the test's own
        for path in (user_key.parent, user_key, user_key.with_suffix(".pub")):
            os.chown(path, 0, 0)
    yield ctl
    leave_no_dags(ctl)
    shutil.rmtree(state, ignore_errors=True)


def leave_no_dags(ctl: controller_env.Controller, timeout: float = 180) -> None:
    """Cancel what the module left live and wait until its DAGs have left the session's pool:
    reservation ids start at r00001 in every module's store, so a DAG left behind (one that
    waits for tomorrow, say) would be taken for the next module's reservation of that id."""
    admin = Actor("root", admin=True)
    rids = [r.id for r in ctl.store.reservations()]
    for res in ctl.store.reservations():
        if not res.cancelled and not all(a.state in TERMINAL for a in res.allocations):
            ctl.service.cancel(admin, res.id)
    deadline = time.monotonic() + timeout
    queued: list[str] = rids
    while time.monotonic() < deadline:
        ctl.reconciler.reconcile_once()
        batches = ctl.condor_q("-af", "JobBatchName").split()
        queued = sorted(set(rids) & set(batches))
        if not queued:
            ctl.reconciler.remove_monitors()  # (the passes above kept them; this is the end)
            return
        time.sleep(1)
    ctl.reconciler.remove_monitors()
    pytest.fail(f"the module's DAGs are still queued after {timeout:.0f} s: {queued}")


@pytest.fixture(scope="module")
def served(controller: controller_env.Controller) -> Iterator[controller_env.Served]:
    """`pcc serve` (loop, API and web page) over the module's controller; its URL is
    ``served.url``. Tests using it must not run reconcile passes themselves."""
    running = controller_env.serve_controller(controller)
    try:
        yield running
    finally:
        running.stop()
