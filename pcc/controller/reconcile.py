"""The reconcile loop's one pass: level-triggered and idempotent.

Each pass reads the store and makes one schedd query with a projection (plus history for
DAGs that have left the queue), then acts on the differences: submit missing DAGs, copy
job-ad state into allocations and events, remove the DAGs of cancelled reservations (their
FINAL node tears down), apply extensions, mark failed boots, and flag orphans. Nothing a
pass does is lost by a crash: a DAG is found again by its batch name before any resubmit.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pcc.common.errors import PccError
from pcc.condor.adapter import CondorAdapter, JobStatus
from pcc.condor.dag import JobEnvironment, submit_reservation
from pcc.controller import metrics
from pcc.controller.admission import Booking, peak_usage
from pcc.controller.model import HOLDING, TERMINAL, TRANSITIONS, Allocation, Reservation, State
from pcc.controller.probes import DOWN, UP, Probe, advertise, probe_sites, site_ad
from pcc.controller.settings import Settings, SiteEntry
from pcc.controller.siteclient import SiteClient
from pcc.controller.store import Store

log = logging.getLogger(__name__)

SCHEDULER_UNIVERSE = 7
PROJECTION = [
    "ClusterId",
    "ProcId",
    "QDate",
    "JobStatus",
    "JobUniverse",
    "JobBatchName",
    "DAGManJobId",
    "DAGNodeName",
    "PccReservation",
    "PccSite",
    "PccState",
    "PccMessage",
    "PccEnd",
    "PccFrontend",
    "PccPublicIP",
    "PccNodesUp",
    "PccNodesTotal",
    "PccTornDown",
    "HoldReason",
    "ExitCode",
]
# The order allocations move along; a pass may skip ahead, and steps through the states between.
PATH = [State.REQUESTED, State.SCHEDULED, State.BOOTING, State.RUNNING, State.STOPPING, State.STOPPED]


@dataclass
class Outcome:
    ok: bool = True
    seconds: float = 0.0
    jobs: int = 0
    submitted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    transitions: int = 0
    orphans: list[int] = field(default_factory=list)  # DAG clusters with no reservation
    orphan_clusters: list[tuple[str, str]] = field(default_factory=list)  # (site, cluster)
    probes: list[Probe] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def shortest_path(current: State, target: State) -> list[State]:
    """The fewest allowed transitions from ``current`` to ``target`` (breadth first)."""
    paths: dict[State, list[State]] = {current: []}
    frontier = [current]
    while frontier and target not in paths:
        nxt = []
        for state in frontier:
            for step in sorted(TRANSITIONS[state]):
                if step not in paths:
                    paths[step] = [*paths[state], step]
                    nxt.append(step)
        frontier = nxt
    return paths.get(target, [])


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        condor: CondorAdapter,
        env: JobEnvironment,
        dag_owner: str | None,
    ) -> None:
        self.settings, self.store, self.condor, self.env, self.dag_owner = (
            settings,
            store,
            condor,
            env,
            dag_owner,
        )

    last_site_check: float = 0.0

    def reconcile_once(self, check_sites: bool | None = None, probe: bool = False) -> Outcome:
        """One pass; lets no exception escape (a failed step is retried by the next pass).
        Every ``orphan_check_s`` (or when ``check_sites``) it also asks each site for its
        clusters, to flag those no live reservation accounts for; with ``probe`` it also runs
        the site health probes (:meth:`probe_sites`)."""
        t0 = time.monotonic()
        out = Outcome()
        try:
            with metrics.SCHEDD_QUERY_SECONDS.time():
                ads = self.condor.query("PccReservation =!= undefined || JobUniverse == 7", PROJECTION)
        except PccError as exc:
            log.warning("reconcile: schedd query failed: %s; next pass retries", exc)
            metrics.RECONCILE_ERRORS.inc()
            return Outcome(ok=False, seconds=time.monotonic() - t0, errors=[str(exc)])
        out.jobs = len(ads)
        by_res: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for ad in ads:
            key = ad.get("PccReservation") or ad.get("JobBatchName")
            if key:
                by_res[str(key)].append(ad)
        known = set()
        for res in self.store.reservations():
            known.add(res.id)
            if all(a.state in TERMINAL for a in res.allocations) and res.id not in by_res:
                continue
            try:
                self._reservation(res, by_res.get(res.id, []), out)
            except Exception as exc:  # one reservation's trouble must not stop the others
                log.exception("reservation %s: reconcile step failed; next pass retries", res.id)
                out.ok = False
                out.errors.append(f"{res.id}: {exc}")
        for ad in ads:
            if (
                ad.get("JobUniverse") == SCHEDULER_UNIVERSE
                and str(ad.get("JobBatchName", "")) not in known
                and ad.get("PccReservation")
            ):
                out.orphans.append(int(ad["ClusterId"]))
                log.warning(
                    "orphan DAG %s: reservation %s is not in the store",
                    ad["ClusterId"],
                    ad.get("PccReservation"),
                )
        if probe:  # `pcc serve` probes in a job of its own, so hung sites never delay a pass
            out.probes = self.probe_sites()
        self._export(ads, out, time.monotonic() - t0)
        due = time.monotonic() - self.last_site_check >= self.settings.timings.orphan_check_s
        if check_sites or (check_sites is None and due and self.settings.sites):
            self.last_site_check = time.monotonic()
            out.orphan_clusters = self._orphan_clusters(by_res)
        out.seconds = time.monotonic() - t0
        log.debug("reconcile: %s", out)
        return out

    def probe_sites(self) -> list[Probe]:
        """Probe every site, record health (changes are events), refresh the image catalog
        the service checks reservations against, and publish the sites' collector ads."""
        sites = {s.name: s for s in self.settings.sites}
        found = probe_sites(list(sites.values()), self.settings.timings.ssh_timeout_s)
        ads = []
        for p in found:
            before = self.store.record_health(p.site, p.health, p.reason, p.time, p.seconds)
            if before is not None:
                log.log(
                    logging.WARNING if p.health != UP else logging.INFO,
                    "site %s: %s -> %s%s",
                    p.site,
                    before or "unknown",
                    p.health,
                    f" ({p.reason})" if p.reason else "",
                )
            if p.images is not None:
                self.store.set_site_images(p.site, p.images)
            ads.append(site_ad(sites[p.site], p))
            metrics.SITE_UP.labels(p.site).set(0 if p.health == DOWN else 1)
            metrics.SITE_HEALTHY.labels(p.site).set(1 if p.health == UP else 0)
            metrics.SITE_PROBE_SECONDS.labels(p.site).set(p.seconds)
            if p.report is not None:
                metrics.SITE_LAST_SUCCESS.labels(p.site).set(p.time)
                for kind in ("total", "free", "reserved"):
                    metrics.SITE_CPUS.labels(p.site, kind).set(getattr(p.report.cpus, kind))
                    metrics.SITE_MEMORY.labels(p.site, kind).set(
                        getattr(p.report.memory_mb, kind) * 1024 * 1024
                    )
        try:
            known = self.condor.collector_names("PccSite")
            advertise(ads, sorted(set(known) - set(sites)))
        except Exception as exc:  # the collector's trouble must not stop the loop
            log.warning("cannot publish site ads: %s", exc)
        return found

    def _export(self, ads: list[dict[str, Any]], out: Outcome, seconds: float) -> None:
        """Refresh the gauges that describe the store and the queue."""
        metrics.RECONCILE_SECONDS.observe(seconds)
        if not out.ok:
            metrics.RECONCILE_ERRORS.inc()
        metrics.QUEUE_JOBS.set(len(ads))
        allocs: dict[str, int] = dict.fromkeys((s.value for s in State), 0)
        reservations: dict[str, int] = dict.fromkeys((s.value for s in State), 0)
        now = time.time()
        next_day: dict[str, list[Booking]] = {s.name: [] for s in self.settings.sites}
        for res in self.store.reservations():
            reservations[res.state.value] += 1
            for a in res.allocations:
                allocs[a.state.value] += 1
                if a.state in HOLDING and a.site in next_day:
                    next_day[a.site].append(Booking(res.begin, res.end, a.cpus, a.memory_gb))
        for state, n in allocs.items():
            metrics.ALLOCATIONS.labels(state).set(n)
        for state, n in reservations.items():
            metrics.RESERVATIONS.labels(state).set(n)
        for site, bookings in next_day.items():
            peak, _, _ = peak_usage(bookings, int(now), int(now + 86400), lambda b: b.cpus)
            metrics.SITE_CPUS_NEXT_DAY.labels(site).set(peak)

    def _orphan_clusters(self, by_res: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
        """Clusters at the sites that no live reservation (or running teardown) accounts for.
        Sites are asked in parallel, each bounded by the SSH timeout; they are flagged, never
        destroyed: an operator decides."""
        live = {
            (a.site, r.id)
            for r in self.store.reservations()
            for a in r.allocations
            if a.state not in TERMINAL or r.id in by_res
        }
        timeout = self.settings.timings.ssh_timeout_s

        def clusters(site: SiteEntry) -> set[str]:
            return set(SiteClient(site, timeout=timeout).clusters())

        found: list[tuple[str, str]] = []
        with ThreadPoolExecutor(max_workers=min(8, len(self.settings.sites))) as pool:
            futures = {pool.submit(clusters, site): site for site in self.settings.sites}
            for future, site in futures.items():
                try:
                    names = future.result(timeout=timeout * 3)
                except Exception as exc:  # an unreachable site is the probes' business
                    log.debug("site %s: cannot list clusters: %s", site.name, exc)
                    continue
                for name in sorted(names - {rid for s, rid in live if s == site.name}):
                    log.warning(
                        "orphan cluster %s at site %s: no live reservation; tear it down with "
                        "`pragma shutdown %s; pragma clean %s` at the site",
                        name,
                        site.name,
                        name,
                        name,
                    )
                    found.append((site.name, name))
        return found

    # -- one reservation ---------------------------------------------------------------------
    def _reservation(self, res: Reservation, ads: list[dict[str, Any]], out: Outcome) -> None:
        # Jobs older than the reservation belong to someone else with the same id (another
        # controller on this pool, or a store that was reset): never adopt them.
        ads = [a for a in ads if (a.get("QDate") or 0) >= res.created - 5]
        dag_ads = [a for a in ads if a.get("JobUniverse") == SCHEDULER_UNIVERSE]
        dag = res.dag_cluster
        if dag is None and dag_ads:  # submitted, but the store never heard: adopt it
            dag = int(dag_ads[0]["ClusterId"])
            self.store.set_dag(res.id, dag)
        if dag is None and not res.cancelled:
            found = self.condor.history(
                f'JobBatchName == "{res.id}" && JobUniverse == 7 && QDate >= {res.created - 5}',
                ["ClusterId"],
                1,
            )
            if found:
                dag = int(found[0]["ClusterId"])
            else:
                dag = submit_reservation(self.condor, res, self.settings, self.env, self.dag_owner)
                out.submitted.append(res.id)
                log.info("reservation %s: DAG %d submitted", res.id, dag)
            self.store.set_dag(res.id, dag)
            for alloc in res.allocations:
                self._advance(alloc, State.SCHEDULED, f"DAG {dag} submitted", out)
            res = self.store.reservation(res.id)
        in_queue = bool(dag_ads)
        if (
            res.cancelled
            and in_queue
            and dag is not None
            and dag_ads[0].get("JobStatus") != JobStatus.REMOVED
        ):
            self.condor.remove(dag, f"reservation {res.id} cancelled")
            out.removed.append(res.id)
            log.info("reservation %s: cancelled; DAG %d removed, its FINAL node tears down", res.id, dag)
        # Extensions: every watch job follows the reservation's end.
        for ad in ads:
            if str(ad.get("DAGNodeName", "")).startswith("HOLD_") and ad.get("PccEnd") != res.end:
                self.condor.edit(f"{ad['ClusterId']}.{ad['ProcId']}", "PccEnd", res.end)
                log.info("reservation %s: watch job %s now ends at %d", res.id, ad["ClusterId"], res.end)
        final = [a for a in ads if a.get("DAGNodeName") == "FINAL"]
        finished = dag is not None and not in_queue
        history: list[dict[str, Any]] = []
        if finished:
            history = self.condor.history(f"DAGManJobId == {dag}", PROJECTION)
        for alloc in res.allocations:
            self._allocation(res, alloc, ads, history, final, finished, out)

    def _allocation(
        self,
        res: Reservation,
        alloc: Allocation,
        ads: list[dict[str, Any]],
        history: list[dict[str, Any]],
        final: list[dict[str, Any]],
        finished: bool,
        out: Outcome,
    ) -> None:
        site = alloc.site
        boot = [a for a in ads if a.get("DAGNodeName") == f"BOOT_{site}"]
        hold = [a for a in ads if a.get("DAGNodeName") == f"HOLD_{site}"]
        if alloc.state in TERMINAL:
            return
        boot_hist = [a for a in history if a.get("DAGNodeName") == f"BOOT_{site}"]
        if (
            not (boot or hold or finished)
            and res.dag_cluster is not None
            and self._state(alloc) in (State.SCHEDULED, State.BOOTING)
        ):
            # The boot node left the queue while the DAG goes on: did its last attempt fail?
            boot_hist = self.condor.history(
                f'DAGManJobId == {res.dag_cluster} && DAGNodeName == "BOOT_{site}"', PROJECTION, 1
            )
        failed = next((a for a in boot + boot_hist[:1] if a.get("PccState") == "failed"), None)
        if failed is not None:
            self._fail(alloc, str(failed.get("PccMessage") or "boot failed"), out)
            return
        held = next((a for a in boot if a.get("JobStatus") == JobStatus.HELD), None)
        if held is not None:
            self._fail(alloc, f"boot job held: {held.get('HoldReason', '')}", out)
            # A held node would stall its DAG for good: remove it, so DAGMan counts the node
            # as failed, the other sites go on, and the FINAL node tears down in the end.
            self.condor.remove(f"{held['ClusterId']}.{held['ProcId']}", "boot could not start in time")
            return
        if hold:
            ad = hold[0]
            self._copy(alloc, ad)
            state = ad.get("PccState")
            if state in ("running", "degraded"):
                self._advance(alloc, State.RUNNING, f"site reports {ad.get('PccMessage', state)}", out)
            elif state == "ending":
                self._advance(alloc, State.STOPPING, "the reservation ended", out)
            else:
                self._advance(alloc, State.BOOTING, "cluster booted; waiting for its first status", out)
        elif boot:
            ad = boot[0]
            if ad.get("JobStatus") == JobStatus.RUNNING or ad.get("PccState") in ("booting", "retrying"):
                self._advance(alloc, State.BOOTING, str(ad.get("PccMessage") or "boot job started"), out)
        if final and self._state(alloc) in (State.BOOTING, State.RUNNING):
            self._advance(alloc, State.STOPPING, "teardown started", out)
        if finished:
            teardown = next((a for a in history if a.get("DAGNodeName") == "FINAL"), None)
            state = self._state(alloc)
            if teardown is None or state in TERMINAL:
                return
            if site not in str(teardown.get("PccTornDown") or "").split(","):
                self._fail(alloc, f"teardown failed: {teardown.get('PccMessage', '')}", out)
            elif state is State.BOOTING and not any(a.get("DAGNodeName") == f"HOLD_{site}" for a in history):
                self._fail(alloc, "the boot never completed", out)
            elif state in (State.REQUESTED, State.SCHEDULED):
                if res.cancelled and alloc.id is not None:
                    self.store.transition(alloc.id, State.CANCELLED, "cancelled before it booted")
                else:
                    self._fail(alloc, "the reservation ended before its cluster booted", out)
            else:
                self._advance(alloc, State.STOPPED, "torn down", out)

    # -- helpers -------------------------------------------------------------------------------
    def _copy(self, alloc: Allocation, ad: dict[str, Any]) -> None:
        fields = {
            "frontend": ad.get("PccFrontend") or "",
            "public_ip": ad.get("PccPublicIP") or "",
            "nodes_up": int(ad.get("PccNodesUp") or 0),
            "nodes_total": int(ad.get("PccNodesTotal") or 0),
        }
        current = {
            "frontend": alloc.frontend,
            "public_ip": alloc.public_ip,
            "nodes_up": alloc.nodes_up,
            "nodes_total": alloc.nodes_total,
        }
        if fields != current and alloc.id is not None:
            self.store.update_allocation(alloc.id, **fields)

    def _state(self, alloc: Allocation) -> State:
        return State(self.store.db["allocations"].get(alloc.id)["state"])

    def _advance(self, alloc: Allocation, target: State, why: str, out: Outcome) -> None:
        """Walk the allocation forward along PATH to ``target`` (never backwards)."""
        assert alloc.id is not None
        current = self._state(alloc)
        if current in TERMINAL or current not in PATH or PATH.index(current) >= PATH.index(target):
            return
        for step in shortest_path(current, target):  # never through states it did not reach
            if self.store.transition(alloc.id, step, why):
                out.transitions += 1
                self._observe(alloc, step)
                log.info("reservation %s site %s: %s (%s)", alloc.reservation, alloc.site, step, why)

    def _observe(self, alloc: Allocation, step: State) -> None:
        """Boot duration (booting -> running) and teardown delay (end -> stopped)."""
        now = time.time()
        if step is State.RUNNING:
            started = [
                e.time
                for e in self.store.events(alloc.reservation)
                if e.site == alloc.site and e.to_state == State.BOOTING.value
            ]
            if started:
                metrics.BOOT_SECONDS.labels(alloc.site).observe(now - started[-1])
        elif step is State.STOPPED:
            end = self.store.reservation(alloc.reservation).end
            metrics.TEARDOWN_DELAY.labels(alloc.site).observe(max(0.0, now - end))

    def _fail(self, alloc: Allocation, reason: str, out: Outcome) -> None:
        assert alloc.id is not None
        if self._state(alloc) in TERMINAL:
            return
        if self.store.transition(alloc.id, State.FAILED, reason, reason=reason):
            out.transitions += 1
            metrics.BOOT_FAILURES.labels(alloc.site, metrics.failure_kind(reason)).inc()
            log.warning("reservation %s site %s: failed: %s", alloc.reservation, alloc.site, reason)
