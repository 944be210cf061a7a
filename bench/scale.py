"""Thousands of reservations on this machine: a real personal pool, real sshds and the real
site tool with the `simulated` driver (nothing booted), PCC's reconcile loop in this process.

For each case (N reservations running at once over S sites; all sites share one sshd and
site account, each with its own site file; the sites' sshd and site tool run at nice 19, as
they stand for other machines) it prints:

* memory per running reservation: PSS of everything the pool runs for them (schedd,
  DAGMans, the site monitors and their starters), less the idle pool, divided by N;
* PCC's own memory (this process, which runs the loop), PSS;
* one reconcile pass at N running (median of 5);
* the monitors' SSH logins per site per minute (over --window seconds at steady state);
* `condor_q -af PccReservation PccState` (median of 3).

Then a burst (--burst reservations over 10 sites that begin at the same second and end at
the same second): how late the boots are called after the begin (``PccBootCalled`` of the
boot jobs, which start the boot lead before it), and how late the teardowns start and end
after the shared end (the HOLD nodes, released by the schedd, are the teardowns; FINAL runs
only where something failed).
Targets (issue 13): under 3 MB per running reservation, a pass under 1 s at 3,000, at most
2 logins per site per minute, the last boot and teardown started within 30 s.
It is not a test.

    .venv/bin/python bench/scale.py [--cases 100x10,1000x100,3000x100] [--burst 500] [--window 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PCC_STATE_DIR", str(REPO / ".state"))  # the install `make` made

from pcc.condor.adapter import CondorAdapter  # noqa: E402
from pcc.condor.monitors import monitor_constraint  # noqa: E402
from pcc.condor.pool import PersonalPool  # noqa: E402
from pcc.controller.model import State  # noqa: E402
from pcc.controller.service import Actor, SiteRequest  # noqa: E402
from pcc.controller.settings import Timings  # noqa: E402
from pcc.dev import controller_env, demo  # noqa: E402
from pcc.dev.pools import scratch_pool  # noqa: E402
from pcc.dev.simulated_sites import start_simulated_sites  # noqa: E402

ALICE = Actor("alice")
ADDRESS = "127.0.0.40"
POLL_S = 30.0
SITES_NICE = ("nice", "-n", "19")


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(Path(entry, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def comm(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd if c)
    if "pcc-job monitor" in text:
        return "monitor"
    if "pcc-job" in text:
        return "pcc-job"
    return Path(cmd[0].decode(errors="replace")).name if cmd and cmd[0] else "?"


def pool_memory(pool: PersonalPool) -> dict[str, int]:
    """PSS in kB of everything under the pool's master, by program."""
    master = pool.master_pid()
    assert master is not None
    out: dict[str, int] = {}
    for pid in descendants(master):
        name = comm(pid)
        out[name] = out.get(name, 0) + pss_kb(pid)
    return out


def controller(root: Path, pool: PersonalPool, n_sites: int) -> tuple[controller_env.Controller, Any]:
    key = demo.make_keypair(root / "keys" / "id_ed25519", "pcc-controller")
    # The sites stand for other machines: their sshd and `pragma` (~0.3 s of CPU per call)
    # run at nice 19 (see no_autogroup), so that these 2 cores show the controller's own cost.
    sites = start_simulated_sites(
        root / "sites",
        [f"s{i:03d}" for i in range(n_sites)],
        ADDRESS,
        Path(f"{key}.pub").read_text(),
        on=SITES_NICE,
    )
    state = root / "ctl"
    state.mkdir()
    state.chmod(0o755)
    (state / "known_hosts").write_text(sites.known_hosts_line + "\n")
    (state / "id_ed25519").write_bytes(key.read_bytes())
    (state / "id_ed25519").chmod(0o600)
    user_key = demo.make_keypair(root / "user" / "id_ed25519", "alice@lab")
    # The sites' `pragma` runs on this machine's 2 cores too (~0.2 s of CPU per listing):
    # monitors poll every 30 s, and a probe may take a minute when 100 answer at once.
    ctl = controller_env.make_controller(
        state,
        pool,
        [],
        state / "id_ed25519",
        state / "known_hosts",
        user_key,
        extra_sites="\n" + sites.controller_toml(state / "id_ed25519", state / "known_hosts"),
        # Boots start the production default's lead before the begin (the tests use none).
        timings={"watch_poll_s": POLL_S, "ssh_timeout_s": 60, "boot_lead_s": Timings().boot_lead_s},
    )
    controller_env.chown_tree(state, pool.daemon_user().pw_name)
    for _ in range(10):  # 100 sites probed at once behind one sshd: some time out at first
        if all(p.health == "up" for p in ctl.probe()):
            break
    return ctl, sites


@contextlib.contextmanager
def no_autogroup() -> Iterator[bool]:
    """Nice levels count only across one session group while the kernel's autogroup
    scheduling is on (every SSH login and every HTCondor job is a session of its own, and
    each gets an equal share): turned off for the bench's run when this is root, restored
    after. Yields whether nice levels count."""
    path = Path("/proc/sys/kernel/sched_autogroup_enabled")
    try:
        on = path.read_text().strip() != "0"
    except OSError:  # a kernel without autogroup
        on = False
    try:
        if on:
            path.write_text("0")
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        if on:
            path.write_text("1")


def site_request(i: int, n_sites: int) -> SiteRequest:
    return SiteRequest(f"s{i % n_sites:03d}", 1, 0.25)


def reserve_many(ctl: controller_env.Controller, n: int, n_sites: int, begin: int, end: int) -> list[str]:
    key = ctl.user_public_key()
    return [
        ctl.service.reserve(
            ALICE, "tiny", [SiteRequest(f"s{i % n_sites:03d}", 1, 0.25)], begin, end, ssh_key=key
        ).id
        for i in range(n)
    ]


def drive_until(
    ctl: controller_env.Controller, rids: list[str], target: State, timeout: float, *also: State
) -> float:
    """Reconcile passes until every reservation's allocation is ``target`` (or one of
    ``also``); seconds taken."""
    t0 = time.monotonic()
    left = set(rids)
    while left:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"{len(left)} of {len(rids)} reservations not {target} after {timeout:.0f} s")
        ctl.reconciler.reconcile_once()
        states = {r.id: r.allocations[0].state for r in ctl.store.reservations() if r.id in left}
        left = {r for r, s in states.items() if s is not target and s not in also}
        time.sleep(1)
    return time.monotonic() - t0


def monitor_logins(ctl: controller_env.Controller) -> dict[str, int]:
    ads = CondorAdapter().query(monitor_constraint(ctl.settings.controller_id), ["PccSite", "PccLogins"])
    return {str(a["PccSite"]): int(a.get("PccLogins") or 0) for a in ads}


def timed(argv: list[str], env: dict[str, str], runs: int = 3) -> float:
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        out.append(time.monotonic() - t0)
    return statistics.median(out)


def steady_case(n: int, n_sites: int, window: float) -> dict[str, Any]:
    with scratch_pool("bench-scale-") as (root, pool):
        idle = sum(pool_memory(pool).values())
        ctl, sites = controller(root, pool, n_sites)
        try:
            now = int(time.time())
            t0 = time.monotonic()
            rids = reserve_many(ctl, n, n_sites, now, now + 6 * 3600)
            took = drive_until(ctl, rids, State.RUNNING, timeout=max(600, n * 2.0))
            print(
                f"  {n} reservations over {n_sites} sites running {time.monotonic() - t0:.0f} s after booking"
            )
            time.sleep(POLL_S + 5)  # the monitors' first polls after the last boot
            passes = []
            for _ in range(5):
                p0 = time.monotonic()
                ctl.reconciler.reconcile_once()
                passes.append(time.monotonic() - p0)
            before, sshd_before = monitor_logins(ctl), sites.logins()
            time.sleep(window)
            after, sshd_after = monitor_logins(ctl), sites.logins()
            logins = sum(after.get(s, 0) - before.get(s, 0) for s in after) / n_sites / (window / 60)
            memory = pool_memory(pool)
            q = timed(
                [str(pool.bin_dir / "condor_q"), "-af", "PccReservation", "PccState"], pool.client_env()
            )
            busy = sum(memory.values()) - idle
            return {
                "n": n,
                "sites": n_sites,
                "boot_s": took,
                "per_res_mb": busy / n / 1024,
                "breakdown_mb": {
                    k: round(v / 1024, 1) for k, v in sorted(memory.items(), key=lambda kv: -kv[1])[:6]
                },
                "pcc_mb": pss_kb(os.getpid()) / 1024,
                "pass_ms": statistics.median(passes) * 1000,
                "logins_per_site_min": logins,
                "sshd_logins_per_site_min": (sshd_after - sshd_before) / n_sites / (window / 60),
                "condor_q_s": q,
            }
        finally:
            sites.stop()


def burst_timeline(condor: CondorAdapter, begin: int, end: int, lead: float) -> dict[str, dict[str, Any]]:
    """Where a burst's time went, per reservation, from the finished jobs' ads (seconds)."""

    def by_res(role: str, attrs: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ad in condor.history(f'PccRole =?= "{role}"', ["PccReservation", *attrs]):
            out.setdefault(str(ad["PccReservation"]), ad)  # most recent first: the last attempt
        return out

    boots = by_res("boot", ["PccBootCalled", "JobCurrentStartDate", "CompletionDate"])
    holds = by_res("hold", ["JobCurrentStartDate", "CompletionDate"])
    finals = by_res("final", ["QDate", "JobCurrentStartDate", "CompletionDate"])

    def stage(rows: dict[str, dict[str, Any]], f: Any) -> dict[str, float | int | None]:
        values = []
        for rid, ad in rows.items():
            try:
                values.append(float(f(rid, ad)))
            except (KeyError, TypeError, ValueError):
                continue
        return {
            "n": len(values),
            "median": round(statistics.median(values), 1) if values else None,
            "last": round(max(values), 1) if values else None,
        }

    return {
        # The schedd started the job (released at its time), then pcc-job (Python) called the
        # site, then `pragma boot` returned.
        "boot job started after its time": stage(
            boots, lambda r, a: a["JobCurrentStartDate"] - (begin - lead)
        ),
        "boot called after its time": stage(boots, lambda r, a: a["PccBootCalled"] - (begin - lead)),
        "boot called after begin": stage(boots, lambda r, a: a["PccBootCalled"] - begin),
        "boot done after begin": stage(boots, lambda r, a: a["CompletionDate"] - begin),
        # The HOLD node, released by the schedd, is the site's teardown.
        "teardown started after end": stage(holds, lambda r, a: a["JobCurrentStartDate"] - end),
        "torn down after end": stage(holds, lambda r, a: a["CompletionDate"] - end),
        # FINAL runs only where something failed (its PRE script skips it otherwise).
        "FINAL started after end": stage(finals, lambda r, a: a["JobCurrentStartDate"] - end),
    }


def burst_case(n: int, n_sites: int = 10) -> dict[str, Any]:
    with scratch_pool("bench-burst-") as (root, pool):
        ctl, sites = controller(root, pool, n_sites)
        try:
            submitting = 30 + n * 0.4  # time to submit the DAGs before the boots' time
            boot_lead = ctl.settings.timings.boot_lead_s
            begin = int(time.time() + submitting + boot_lead)
            end = begin + int(submitting) + 120
            rids = reserve_many(ctl, n, n_sites, begin, end)
            shortfalls = []
            # (a pass may first see a reservation at its end, already tearing down); a stage
            # some reservations miss is reported with the figures of those that made it.
            for target, timeout, also in (
                (State.RUNNING, end - time.time() + 60, (State.STOPPING, State.STOPPED)),
                (State.STOPPED, end - time.time() + 900, (State.FAILED,)),
            ):
                try:
                    drive_until(ctl, rids, target, timeout, *also)
                except SystemExit as exc:
                    shortfalls.append(str(exc))
            return {
                "n": n,
                "boot_lead_s": boot_lead,
                "timeline": burst_timeline(CondorAdapter(), begin, end, boot_lead),
                "shortfalls": shortfalls,
                "failed": sum(1 for r in ctl.store.reservations() if r.allocations[0].state is State.FAILED),
            }
        finally:
            sites.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="100x10,1000x100,3000x100", help="NxSITES,... ('' for none)")
    parser.add_argument("--burst", type=int, default=500, help="reservations in the burst (0: none)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds to count SSH logins over")
    args = parser.parse_args()
    with no_autogroup() as nice_counts:
        counts = "counts (autogroup off for the run)" if nice_counts else "does not count (autogroup on)"
        print(f"bench/scale.py on {os.cpu_count()} CPUs; the sites' nice level {counts}")
        run(args)


def run(args: argparse.Namespace) -> None:
    for case in filter(None, args.cases.split(",")):
        n, sites = (int(x) for x in case.split("x"))
        r = steady_case(n, sites, args.window)
        print(
            f"N={r['n']:>5} over {r['sites']:>3} sites: {r['per_res_mb']:.2f} MB per running reservation "
            f"(pool PSS by program, MB: {r['breakdown_mb']}); PCC {r['pcc_mb']:.0f} MB; "
            f"pass {r['pass_ms']:.0f} ms; monitor logins {r['logins_per_site_min']:.2f}/site/min "
            f"(sshd saw {r['sshd_logins_per_site_min']:.2f}); condor_q -af {r['condor_q_s'] * 1000:.0f} ms; "
            f"all running {r['boot_s']:.0f} s after the first pass",
            flush=True,
        )
    if args.burst:
        b = burst_case(args.burst)
        print(
            f"burst of {b['n']} reservations over 10 sites with one begin and one end, boots "
            f"{b['boot_lead_s']:.0f} s before the begin (s: median, last):"
        )
        for name, fig in b["timeline"].items():
            figures = f"{fig['median']!s:>7} {fig['last']!s:>7}"
            print(f"  {name:<32} {figures}   ({fig['n']} reservations)", flush=True)
        for shortfall in b["shortfalls"]:
            print(f"  missed: {shortfall}")
        print(f"  allocations failed: {b['failed']}", flush=True)


if __name__ == "__main__":
    main()
