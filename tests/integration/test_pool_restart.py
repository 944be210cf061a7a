"""A pool restart does not make a reservation late: stop the pool while a cluster runs,
start it again after the reservation's end, and the cluster is torn down within 30 s of
the restart (DAGMan is back at once: no scheduler-universe cool-down)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pcc.condor.pool import PersonalPool
from pcc.controller.model import State
from pcc.controller.service import Actor, SiteRequest
from pcc.dev.controller_env import Controller

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]


def test_a_cluster_whose_end_passes_while_the_pool_is_down_is_torn_down_soon_after_the_restart(
    controller: Controller, condor_pool: PersonalPool, ssh_sites: dict[str, Any]
) -> None:
    site = next(s for s in ssh_sites["sites"] if s.name == "a").site
    ctl = controller
    now = time.time()
    res = ctl.service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("a", 1, 0.5)],
        int(now + 3),
        int(now + 45),
        ssh_key=ctl.user_public_key(),
    )
    ctl.wait_state(res.id, "a", State.RUNNING, timeout=120)
    assert site.leftovers(res.id) != []
    assert condor_pool.stop()
    try:
        time.sleep(max(0.0, res.end + 5 - time.time()))  # the end passes with the pool down
        assert site.leftovers(res.id) != []  # nobody tore it down meanwhile
    finally:
        condor_pool.start(timeout=90)
    restarted = time.monotonic()
    while site.leftovers(res.id) and time.monotonic() - restarted < 60:
        time.sleep(0.5)
    took = time.monotonic() - restarted
    print(f"torn down {took:.1f} s after the pool restarted")
    assert site.leftovers(res.id) == [], "still there a minute after the restart"
    assert took <= 30, f"torn down {took:.0f} s after the restart"
    # The controller's adapter finds the restarted schedd by itself and records the end.
    ctl.wait_state(res.id, "a", State.STOPPED, timeout=60)
