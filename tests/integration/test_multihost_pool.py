"""PCC past one machine: a real multi-host HTCondor pool, each host a network namespace this
test makes (`ip netns`, veth pairs on a bridge), all on the 10.77.0.0/24 it creates:

    cm    10.77.0.1   central manager and schedd (collector, negotiator, schedd); pcc serve
    ex1   10.77.0.2   execute host (startd)
    ex2   10.77.0.3   execute host (startd)
    site  10.77.0.10  a site: its sshd and the site tool (`simulated` driver)

Daemons authenticate with an IDTOKEN signed by the pool's key, which only cm holds. With
``boot_universe = "vanilla"`` the boot job runs on an execute host and reaches the site
from there; the DAG, the HOLD node, the teardown and the site's monitor stay on cm.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pcc.condor.pool import PersonalPool
from pcc.controller.model import State
from pcc.controller.service import Actor, Service, SiteRequest
from pcc.controller.settings import Settings
from pcc.controller.store import Store
from pcc.dev import controller_env, demo
from pcc.dev.netns import Lan
from pcc.dev.netns_pool import NetnsPool
from pcc.dev.simulated_sites import start_simulated_sites
from pcc.dev.site_env import VENV_BIN, as_site_user

pytestmark = [pytest.mark.condor, pytest.mark.slow]
ALICE = Actor("alice")


def until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> Any:
    """``predicate``'s first true value; on timeout an error naming ``what`` and, read at
    that moment, ``explain()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    detail = f": {explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def pool_and_serve_state(hosts: dict[str, Any], reservation: str) -> str:
    """What a timed-out wait reports: the allocations, the reservation's jobs and the end of
    serve's log, as they are when the wait gives up."""
    pool: NetnsPool = hosts["pool"]
    allocations = hosts["store"].reservation(reservation).allocations
    queue = pool.tool(
        "condor_q", "-af:j", "PccReservation", "PccRole", "JobStatus", "HoldReason", "PccState", "PccMessage"
    )
    log = hosts["served"].log()[-4000:]
    return f"allocations {allocations}; condor_q:\n{queue}\nserve's log (end):\n{log}"


@pytest.fixture(scope="module")
def hosts(condor_pool: PersonalPool) -> Iterator[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="multihost-", dir=condor_pool.local_dir.parent))
    root.chmod(0o755)
    lan = Lan().create()
    served = None
    try:
        for name, octet in (("cm", 1), ("ex1", 2), ("ex2", 3), ("site", 10)):
            lan.add_host(name, octet)
        pool = NetnsPool(condor_pool.prefix, root / "pool", lan)
        pool.start()
        state = root / "ctl"
        state.mkdir()
        key = demo.make_keypair(state / "id_ed25519", "pcc-controller")
        sites = start_simulated_sites(
            root / "sites",
            ["far"],
            lan.hosts["site"],
            Path(f"{key}.pub").read_text(),
            account="pcc-sim3",
            boot_s=2.0,
            on=lan.on("site", []),
            forward_address="127.0.0.1",  # the site's own loopback (nothing is booted)
        )
        (state / "known_hosts").write_text(sites.known_hosts_line + "\n")
        config = controller_env.write_config(
            state,
            pool.schedd_host,
            [],
            key,
            state / "known_hosts",
            extra_sites="\n" + sites.controller_toml(key, state / "known_hosts"),
            boot_universe="vanilla",
        )
        controller_env.chown_tree(state, pool.schedd_host.daemon_user().pw_name)
        env = pool.schedd_host.client_env()
        served = controller_env.serve_config(
            config, on=lan.on("cm", []), timeout=120, CONDOR_IDS=env["CONDOR_IDS"]
        )
        settings = Settings.from_env(config=config)
        store = Store(settings.database)
        yield {
            "lan": lan,
            "pool": pool,
            "sites": sites,
            "config": config,
            "served": served,
            "store": store,
            "service": Service(settings, store, sync_sites=False),
            "user_key": Path(
                f"{demo.make_keypair(root / 'alice' / 'id_ed25519', 'alice@lab')}.pub"
            ).read_text(),
        }
    finally:
        if served is not None:
            served.stop()
        lan.destroy()  # every daemon, sshd and job on the hosts with it
        shutil.rmtree(root, ignore_errors=True)


def test_the_pool_has_two_execute_hosts_and_pcc_finds_it_set_up(hosts: dict[str, Any]) -> None:
    pool: NetnsPool = hosts["pool"]
    assert pool.execute_hosts() == {pool.machine("ex1"), pool.machine("ex2")}
    assert pool.schedds() == [f"{pool.schedd_host.daemon_user().pw_name}@{pool.machine('cm')}"]
    check = subprocess.run(
        hosts["lan"].on("cm", [str(VENV_BIN / "pcc"), "--config", str(hosts["config"]), "condor", "check"]),
        env=pool.schedd_host.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "read from the schedd" in check.stdout


def test_a_reservation_boots_on_an_execute_host_runs_and_is_torn_down(hosts: dict[str, Any]) -> None:
    pool: NetnsPool = hosts["pool"]
    store: Store = hosts["store"]
    try:
        until(
            lambda: store.site_health().get("far", {}).get("health") == "up", 120, "pcc serve's probe of far"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {store.site_health()}; {hosts['served'].log()}") from None
    now = int(time.time())
    res = hosts["service"].reserve(
        ALICE, "tiny", [SiteRequest("far", 1, 0.5)], now, now + 75, ssh_key=hosts["user_key"]
    )

    def state() -> State:
        return store.reservation(res.id).allocations[0].state

    until(
        lambda: state() is State.RUNNING,
        180,
        f"{res.id} to run",
        explain=lambda: pool_and_serve_state(hosts, res.id),
    )
    boot = json.loads(
        pool.tool(
            "condor_history",
            "-constraint",
            f'PccReservation == "{res.id}" && PccRole == "boot"',
            "-json",
            "-attributes",
            "LastRemoteHost,JobUniverse,ExitCode",
        )
    )
    assert len(boot) == 1 and boot[0]["ExitCode"] == 0
    assert boot[0]["JobUniverse"] == 5  # vanilla
    host = boot[0]["LastRemoteHost"].split("@", 1)[1]
    assert host in {pool.machine("ex1"), pool.machine("ex2")}, boot
    # The site's monitor (scheduler universe, on cm) writes the live status to the HOLD job's ad.
    hold = until(
        lambda: pool.tool(
            "condor_q", "-constraint", f'PccReservation == "{res.id}" && PccRole == "hold"', "-af", "PccState"
        ).split(),
        60,
        "the HOLD job's status",
    )
    assert hold == ["running"]
    until(
        lambda: state() is State.STOPPED,
        240,
        f"{res.id} to be torn down at its end",
        explain=lambda: pool_and_serve_state(hosts, res.id),
    )
    sites = hosts["sites"]
    argv = ["pragma", "--json", "--config", str(sites.configs["far"]), "list", "cluster"]
    listed = as_site_user(pwd.getpwnam(sites.account), argv, timeout=60)
    assert json.loads(listed.stdout)["result"] == []
