"""Measure a reservation's life on this machine with real parts (a personal pool, an SSH
site on 127.0.0.6 with the libvirt driver and the test image): begin -> all nodes running,
the part of it that is PCC's own (DAG submitted -> boot job started -> `pragma boot`
called), and end -> torn down. Prints medians of --runs; it is not a test.

    .venv/bin/python bench/reservation_cycle.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PCC_STATE_DIR", str(REPO / ".state"))  # the install `make` made

from pcc.condor.adapter import CondorAdapter  # noqa: E402
from pcc.controller.model import State  # noqa: E402
from pcc.controller.service import Actor, SiteRequest  # noqa: E402
from pcc.dev import controller_env, ssh_sites  # noqa: E402
from pcc.dev.demo import make_keypair  # noqa: E402
from pcc.dev.pools import scratch_pool  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with scratch_pool("bench-cycle-") as (root, pool):
        site = None
        try:
            keys = root / "keys"
            make_keypair(keys / "ctl")
            make_keypair(keys / "user")
            site = ssh_sites.make_site(
                root, "bench", "127.0.0.6", (22600, 22699), (keys / "ctl.pub").read_text()
            )
            (keys / "known_hosts").write_text(site.known_hosts_line + "\n")
            (root / "ctl").mkdir()
            os.chmod(root / "ctl", 0o755)
            ctl = controller_env.make_controller(
                root / "ctl",
                pool,
                [site],
                keys / "ctl",
                keys / "known_hosts",
                keys / "user",
            )
            controller_env.chown_tree(keys, pool.daemon_user().pw_name)
            controller_env.chown_tree(root / "ctl", pool.daemon_user().pw_name)
            condor = CondorAdapter()
            figures: dict[str, list[float]] = {
                k: []
                for k in (
                    "begin -> all nodes running",
                    "DAG submitted -> boot job started",
                    "boot job started -> pragma boot called",
                    "begin -> pragma boot called",
                    "end -> torn down",
                )
            }
            for _ in range(args.runs):
                now = time.time()
                begin, end = int(now + 8), int(now + 28)
                res = ctl.service.reserve(
                    Actor("bench"),
                    "tiny",
                    [SiteRequest("bench", 2, 0.5)],
                    begin,
                    end,
                    ssh_key=ctl.user_public_key(),
                )
                ctl.reconcile()
                submitted = time.time()
                dag = ctl.store.reservation(res.id).dag_cluster
                ctl.wait_state(res.id, "bench", State.RUNNING, timeout=120)
                running = time.time()
                boot = condor.history(
                    f'DAGManJobId == {dag} && DAGNodeName == "BOOT_bench"',
                    ["JobCurrentStartExecutingDate", "JobStartDate", "PccBootCalled"],
                    1,
                )[0]
                started = boot.get("JobCurrentStartExecutingDate") or boot["JobStartDate"]
                figures["begin -> all nodes running"].append(running - begin)
                figures["DAG submitted -> boot job started"].append(started - submitted)
                figures["boot job started -> pragma boot called"].append(boot["PccBootCalled"] - started)
                figures["begin -> pragma boot called"].append(boot["PccBootCalled"] - begin)
                ctl.wait_state(res.id, "bench", State.STOPPED, timeout=120)
                figures["end -> torn down"].append(time.time() - end)
            for name, values in figures.items():
                each = ", ".join(f"{v:.1f}" for v in values)
                print(f"{name}: median {statistics.median(values):.1f} s ({each})")
            print("(boot lead 0 s; ClassAd times have 1 s resolution)")
        finally:
            if site is not None:
                ssh_sites.stop_site(site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
