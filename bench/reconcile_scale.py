"""Measure one reconcile pass — the controller's own cost — against a real personal pool with
1,000, 10,000 and 100,000 past reservations in the store, and 0 or 100 live ones. The live
ones are at a site that is never reached (its boots wait for a begin a day away), so the
figures are PCC's store reads, its schedd query and its decisions, not a site's. Prints the
median of --passes passes per case and the ratio to the case with no past reservations
(target: at most 1.5 with 100,000). It is not a test.

    .venv/bin/python bench/reconcile_scale.py [--passes 5] [--live 100]
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
from pcc.condor.dag import JobEnvironment, default_pcc_job  # noqa: E402
from pcc.controller.reconcile import Reconciler  # noqa: E402
from pcc.controller.service import Actor, Service, SiteRequest  # noqa: E402
from pcc.controller.settings import Settings  # noqa: E402
from pcc.controller.store import Store  # noqa: E402
from pcc.dev.controller_env import chown_tree  # noqa: E402
from pcc.dev.demo import make_keypair  # noqa: E402
from pcc.dev.pools import scratch_pool  # noqa: E402

PAST = (0, 1_000, 10_000, 100_000)


def add_past(store: Store, start: int, count: int) -> None:
    """``count`` finished reservations (one stopped allocation and two events each), written
    straight into the tables: the bench measures reading them, not making them."""
    now = int(time.time())
    rows, allocs, events = [], [], []
    for i in range(start, start + count):
        rid = f"p{i:06d}"
        begin = now - 86400 * 30 + i
        rows.append(
            {
                "id": rid,
                "seq": -1 - i,  # below the live ids' sequence
                "owner": "past",
                "title": "",
                "image": "tiny",
                "begin": begin,
                "end": begin + 600,
                "created": begin - 60,
                "ssh_key": "ssh-ed25519 AAAA",
                "cancelled": 0,
                "dag_cluster": 100000 + i,
            }
        )
        allocs.append(
            {
                "reservation": rid,
                "site": "far",
                "cpus": 1,
                "memory_gb": 0.5,
                "ent": 0,
                "state": "stopped",
                "reason": "",
                "nodes_up": 0,
                "nodes_total": 1,
                "updated": begin + 700,
            }
        )
        for to_state in ("requested", "stopped"):
            events.append(
                {
                    "time": begin,
                    "reservation": rid,
                    "site": "far",
                    "from_state": "",
                    "to_state": to_state,
                    "why": "",
                }
            )
    with store.immediate():
        store.db["reservations"].insert_all(rows, batch_size=5000)
        store.db["allocations"].insert_all(allocs, batch_size=5000)
        store.db["events"].insert_all(events, batch_size=5000)


def timed_passes(reconciler: Reconciler, passes: int) -> float:
    reconciler.reconcile_once()  # warm: the first pass may still submit or adopt
    times = []
    for _ in range(passes):
        out = reconciler.reconcile_once()
        assert out.ok, out.errors
        times.append(out.seconds)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--live", type=int, default=100)
    args = ap.parse_args()
    with scratch_pool("bench-reconcile-") as (root, pool):
        owner = pool.daemon_user().pw_name
        key = make_keypair(root / "keys" / "id")
        config = root / "pcc.toml"
        config.write_text(
            f'state_dir = "{root}"\n[condor]\nconfig = "{pool.config_file}"\n[[sites]]\nname = "far"\n'
            f'host = "127.0.0.9"\nport = 2222\nuser = "nobody"\nkey = "{key}"\n'
            f'known_hosts = "{root / "keys" / "known_hosts"}"\ncpus = 100000\nmemory_gb = 100000\n'
        )
        chown_tree(root, owner)
        settings = Settings.from_env(config=config)
        env = JobEnvironment(default_pcc_job(), pool.config_file, config, root)
        condor = CondorAdapter()
        results: dict[tuple[int, int], float] = {}
        for live in (0, args.live):
            store = Store(root / f"live-{live}.db")
            store.set_site_images("far", ["tiny"])  # the site is never reached: its catalog is given
            service = Service(settings, store)
            public = Path(f"{key}.pub").read_text()
            begin = int(time.time() + 86400)
            for _ in range(live):
                service.reserve(
                    Actor("bench"), "tiny", [SiteRequest("far", 1, 0.5)], begin, begin + 3600, ssh_key=public
                )
            reconciler = Reconciler(settings, store, condor, env, owner)
            t0 = time.monotonic()
            while live and len(reconciler.reconcile_once().submitted):  # submit the live DAGs first
                pass
            if live:
                settle = time.monotonic() + 120  # measure a steady queue: every DAG's boot node waiting
                while (
                    time.monotonic() < settle
                    and len(condor.query('DAGNodeName == "BOOT_far"', ["ClusterId"])) < live
                ):
                    time.sleep(1)
                print(
                    f"({live} live DAGs submitted and settled in {time.monotonic() - t0:.1f} s)", flush=True
                )
            added = 0
            for past in PAST:
                add_past(store, added, past - added)
                added = past
                results[(live, past)] = timed_passes(reconciler, args.passes)
                print(
                    f"live {live:>3}, past {past:>7,}: one pass {results[(live, past)] * 1000:7.1f} ms",
                    flush=True,
                )
            chown_tree(root, owner)
        for live in (0, args.live):
            base = results[(live, 0)]
            ratio = results[(live, PAST[-1])] / base if base else float("nan")
            print(
                f"live {live:>3}: a pass with {PAST[-1]:,} past reservations costs {ratio:.2f}x one with none"
            )
        print(f"(median of {args.passes} passes; target: at most 1.5x)")
        condor = CondorAdapter()
        for ad in condor.query("true", ["ClusterId"]):  # no teardowns left trying to reach the site
            condor.remove(int(ad["ClusterId"]), "bench done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
