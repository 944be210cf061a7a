"""Record what the reconcile loop observes in real runs (a personal pool, an SSH site with the
libvirt driver and the test image, and a site whose SSH is down) as the JSON fixture that the
decision tests read (``tests/fixtures/reconcile_observations.json``). A development aid, not a
test: run it again when the jobs' ads change.

    .venv/bin/python -m pcc.dev.record_ads [OUT.json]
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pcc.condor.adapter import CondorAdapter
from pcc.controller.model import Allocation, Reservation, State
from pcc.controller.reconcile import PROJECTION, QUEUE_CONSTRAINT, Observation, group_ads
from pcc.controller.service import Actor, SiteRequest
from pcc.dev import controller_env, ssh_sites
from pcc.dev.controller_env import Controller
from pcc.dev.demo import make_keypair
from pcc.dev.pools import scratch_pool

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "reconcile_observations.json"


def to_doc(obs: Observation) -> dict[str, Any]:
    res = dataclasses.asdict(obs.res)
    return {
        "reservation": res,
        "ads": [dict(a) for a in obs.ads],
        "history": [dict(a) for a in obs.history],
        "found_dag": obs.found_dag,
        "boot_history": {k: dict(v) for k, v in obs.boot_history.items()},
    }


def from_doc(doc: dict[str, Any]) -> Observation:
    """An Observation as recorded (the decision tests' input)."""
    raw = dict(doc["reservation"])
    allocations = tuple(Allocation(**{**a, "state": State(a["state"])}) for a in raw.pop("allocations"))
    return Observation(
        Reservation(**raw, allocations=allocations),
        tuple(doc["ads"]),
        tuple(doc["history"]),
        doc["found_dag"],
        doc["boot_history"],
    )


class Recorder:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.condor = CondorAdapter()
        self.taken: dict[str, dict[str, Any]] = {}

    def observe(self, rid: str) -> Observation:
        by_res = group_ads(self.condor.query(QUEUE_CONSTRAINT, PROJECTION))
        return self.ctl.reconciler.observe(self.ctl.store.reservation(rid), by_res.get(rid, []))

    def take(self, label: str, rid: str) -> None:
        self.taken[label] = to_doc(self.observe(rid))
        print(f"recorded {label}", file=sys.stderr)

    def until(
        self,
        label: str,
        rid: str,
        seen: Callable[[Observation], bool],
        timeout: float = 150,
        drive: bool = True,
    ) -> None:
        """Reconcile (unless not ``drive``) until the observation of ``rid`` satisfies
        ``seen``; record it then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obs = self.observe(rid)
            if seen(obs):
                self.taken[label] = to_doc(obs)
                print(f"recorded {label}", file=sys.stderr)
                return
            if drive:
                self.ctl.reconcile()
            time.sleep(0.3)
        last = self.observe(rid)
        jobs = [
            (a.get("DAGNodeName"), a.get("JobStatus"), a.get("PccState"), a.get("PccMessage"))
            for a in last.ads
        ]
        store = [(a.site, a.state.value, a.reason) for a in last.res.allocations]
        raise SystemExit(f"never saw {label} for {rid}: jobs {jobs}; store {store}")


def node(obs: Observation, name: str) -> dict[str, Any] | None:
    return next((dict(a) for a in obs.ads if a.get("DAGNodeName") == name), None)


def record(out: Path) -> None:
    os.environ.setdefault("PCC_STATE_DIR", str(Path(__file__).resolve().parents[2] / ".state"))
    with scratch_pool("record-") as (root, pool):
        site = None
        try:
            keys = root / "keys"
            make_keypair(keys / "ctl")
            make_keypair(keys / "user")
            site = ssh_sites.make_site(root, "a", "127.0.0.6", (22700, 22799), (keys / "ctl.pub").read_text())
            (keys / "known_hosts").write_text(site.known_hosts_line + "\n")
            (root / "ctl").mkdir()
            os.chmod(root / "ctl", 0o755)
            down = (
                '[[sites]]\nname = "c"\nhost = "127.0.0.4"\nport = 2222\nuser = "pcc-c"\n'
                f'key = "{keys / "ctl"}"\nknown_hosts = "{keys / "known_hosts"}"\ncpus = 4\nmemory_gb = 2\n'
            )
            controller_env.chown_tree(keys, pool.daemon_user().pw_name)
            ctl = controller_env.make_controller(
                root / "ctl",
                pool,
                [site],
                keys / "ctl",
                keys / "known_hosts",
                keys / "user",
                extra_sites=down,
            )
            controller_env.chown_tree(root / "ctl", pool.daemon_user().pw_name)
            ctl.store.set_site_images("c", ["tiny"])
            rec = Recorder(ctl)
            key = ctl.user_public_key()
            alice = Actor("alice")
            now = time.time()
            run = ctl.service.reserve(
                alice, "tiny", [SiteRequest("a", 2, 0.5)], int(now + 4), int(now + 70), ssh_key=key
            )
            broken = ctl.service.reserve(
                alice,
                "tiny",
                [SiteRequest("a", 1, 0.5), SiteRequest("c", 1, 0.5)],
                int(now + 4),
                int(now + 30),
                ssh_key=key,
            )
            later = ctl.service.reserve(
                alice, "tiny", [SiteRequest("a", 1, 0.5)], int(now + 3000), int(now + 3600), ssh_key=key
            )
            rec.take("new reservation, no DAG yet", run.id)
            ctl.reconcile()
            rec.take("DAG submitted, boot waiting for its time", later.id)
            rec.until("boot running", run.id, lambda o: (node(o, "BOOT_a") or {}).get("JobStatus") == 2)
            rec.until(
                "boot failed on its last attempt",
                broken.id,
                lambda o: bool(
                    [
                        a
                        for a in (*o.ads, *o.history, *o.boot_history.values())
                        if a.get("DAGNodeName") == "BOOT_c" and a.get("PccState") == "failed"
                    ]
                ),
            )
            # At its end its HOLD node tears site a down; the DAG failed (BOOT_c), so FINAL
            # then tears down both. Not driven meanwhile, the store still has site a live.
            rec.until(
                "FINAL running after a failed boot",
                broken.id,
                lambda o: node(o, "FINAL") is not None,
                drive=False,
            )
            rec.until(
                "partly failed DAG gone", broken.id, lambda o: bool(o.history) and not o.ads, drive=False
            )
            rec.until(
                "HOLD waiting, cluster running",
                run.id,
                lambda o: (node(o, "HOLD_a") or {}).get("PccState") == "running",
            )
            ctl.reconcile()
            extended = ctl.service.extend(alice, run.id, run.end + 5)
            rec.take("extended: the HOLD node still has the old end", run.id)
            assert extended.end == run.end + 5
            rec.until(
                "HOLD released at the end, tearing down",
                run.id,
                lambda o: (node(o, "HOLD_a") or {}).get("JobStatus") == 2,
            )
            # Every node succeeded: FINAL's PRE script skipped it, HOLD_a's ad says torn down.
            rec.until(
                "DAG gone with per-site teardown results", run.id, lambda o: bool(o.history) and not o.ads
            )
            # A boot job that is held (here by hand: HTCondor puts one on hold the same way when
            # its deferral window passes) and a cancelled reservation whose DAG is still queued.
            held_res = ctl.service.reserve(
                alice,
                "tiny",
                [SiteRequest("a", 1, 0.5)],
                int(time.time() + 2000),
                int(time.time() + 2400),
                ssh_key=key,
            )
            ctl.reconcile()
            rec.until("boot queued", held_res.id, lambda o: node(o, "BOOT_a") is not None)
            boot = node(rec.observe(held_res.id), "BOOT_a")
            assert boot is not None
            rec.condor.hold(f"{boot['ClusterId']}.{boot['ProcId']}", "recorded")
            rec.until("boot held", held_res.id, lambda o: (node(o, "BOOT_a") or {}).get("JobStatus") == 5)
            ctl.service.cancel(alice, later.id)
            rec.take("cancelled while its DAG is queued", later.id)
            ctl.service.cancel(alice, held_res.id)
            for rid in (later.id, held_res.id):
                ctl.wait(
                    lambda rid=rid: all(
                        a.state.value in ("cancelled", "failed", "stopped")
                        for a in ctl.store.reservation(rid).allocations
                    ),
                    120,
                    rid,
                )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(rec.taken, indent=1, sort_keys=True, default=str) + "\n")
            print(f"wrote {len(rec.taken)} observations to {out}", file=sys.stderr)
        finally:
            if site is not None:
                ssh_sites.stop_site(site)


if __name__ == "__main__":
    record(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
