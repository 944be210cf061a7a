"""The reconcile loop's one pass: decide, then act (level-triggered and idempotent).

A pass *observes* — the live part of the store (one query with a join), one schedd query
with a projection, and history only for DAGs and boot nodes that just left the queue —
then :func:`decide` (pure: observations and the clock in, a list of actions out) says what
differs: submit missing DAGs, adopt ones the store never heard of, copy job-ad state into
allocations and events, remove the DAGs of cancelled reservations (their FINAL node tears
down), apply extensions, remove held boot jobs and fail their allocations. A thin executor
performs each action and records it when it succeeds; a failed action stops that
reservation's remaining ones, and the next pass decides again. A DAG is found again by its
batch name before any resubmit, so a crash anywhere never makes a second DAG.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pcc.common.errors import PccError
from pcc.common.jobstate import PccState
from pcc.condor.adapter import SUBMITTED_ON_HOLD, CondorAdapter, JobStatus, Universe
from pcc.condor.dag import JobEnvironment, read_end, submit_reservation, write_end
from pcc.condor.monitors import (
    RemoveMonitor,
    SubmitMonitor,
    decide_monitors,
    remove_monitors,
    submit_monitor,
    wanted_monitors,
)
from pcc.controller import metrics
from pcc.controller.model import TERMINAL, TRANSITIONS, Allocation, IllegalTransition, Reservation, State
from pcc.controller.settings import Settings
from pcc.controller.store import Store

log = logging.getLogger(__name__)

SCHEDULER_UNIVERSE = Universe.SCHEDULER
Ad = Mapping[str, Any]
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
    "HoldReasonCode",
    "ExitCode",
    "PccRole",
    "PccController",
    "PccDigest",
]
QUEUE_CONSTRAINT = (
    f'PccReservation =!= undefined || JobUniverse == {SCHEDULER_UNIVERSE} || PccRole =?= "monitor"'
)
# A DAGMan job: in the scheduler universe and not itself a DAG node (a reservation's boot,
# HOLD and FINAL jobs run in the scheduler universe too, each with its DAGNodeName).
DAGMAN_CONSTRAINT = f"JobUniverse == {SCHEDULER_UNIVERSE} && DAGNodeName =?= undefined"


def is_dagman(ad: Mapping[str, Any]) -> bool:
    """Whether ``ad`` is a DAGMan job (see :data:`DAGMAN_CONSTRAINT`)."""
    return ad.get("JobUniverse") == SCHEDULER_UNIVERSE and ad.get("DAGNodeName") is None


# What a HOLD node's own teardown publishes once the schedd released it.
TEARING_DOWN = frozenset({PccState.STOPPING, PccState.STOPPED, PccState.TEARDOWN_FAILED})
# The order allocations move along; a pass may skip ahead, and steps through the states between.
PATH = [State.REQUESTED, State.SCHEDULED, State.BOOTING, State.RUNNING, State.STOPPING, State.STOPPED]
# Jobs queued this long before their reservation was created belong to someone else.
QDATE_SLACK_S = 5


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


# -- what a pass sees -------------------------------------------------------------------------
@dataclass(frozen=True)
class Observation:
    """One reservation as the store has it, and its jobs as HTCondor has them."""

    res: Reservation
    ads: tuple[Ad, ...] = ()  # its jobs in the queue (never older than the reservation)
    history: tuple[Ad, ...] = ()  # its DAG's finished jobs, read once the DAG left the queue
    found_dag: int | None = None  # a DAG of it in the history the store never heard of
    boot_history: Mapping[str, Ad] = field(default_factory=dict)  # site -> finished BOOT node
    # The end its DAG directory's end file holds (what a HOLD node submitted from now on
    # waits for); read only while some allocation has no HOLD job yet.
    end_file: int | None = None

    @property
    def dag_ads(self) -> list[Ad]:
        return [a for a in self.ads if is_dagman(a)]

    def node(self, name: str) -> list[Ad]:
        return [a for a in self.ads if a.get("DAGNodeName") == name]


# -- what a pass does -------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    rid: str


@dataclass(frozen=True)
class AdoptDag(Action):
    """The DAG exists (queue or history) but the store never heard of it."""

    cluster: int


@dataclass(frozen=True)
class SubmitDag(Action):
    """Render, write and submit the reservation's DAG; its requested allocations are scheduled."""


@dataclass(frozen=True)
class RemoveDag(Action):
    cluster: int
    reason: str


@dataclass(frozen=True)
class WriteEnd(Action):
    """An extension before a HOLD node exists: the end file its submit description includes
    follows the reservation's end (a HOLD node submitted later waits for the new end)."""

    end: int


@dataclass(frozen=True)
class EditEnd(Action):
    """An extension: the HOLD node's ``PccEnd`` follows the reservation's end."""

    job: str
    end: int


@dataclass(frozen=True)
class RemoveJob(Action):
    job: str
    reason: str


@dataclass(frozen=True)
class CopyStatus(Action):
    alloc_id: int
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Transition(Action):
    alloc_id: int
    site: str
    target: State
    why: str


@dataclass(frozen=True)
class Fail(Action):
    alloc_id: int
    site: str
    reason: str


class _Walk:
    """Allocation states as the decided actions leave them (a pass moves each at most along
    the path of the state machine, never backwards)."""

    def __init__(self, res: Reservation, actions: list[Action]) -> None:
        self.res, self.actions = res, actions
        self.state = {a.id: a.state for a in res.allocations}

    def advance(self, alloc: Allocation, target: State, why: str) -> None:
        assert alloc.id is not None
        current = self.state[alloc.id]
        if current in TERMINAL or current not in PATH or PATH.index(current) >= PATH.index(target):
            return
        for step in shortest_path(current, target):  # never through states it did not reach
            self.actions.append(Transition(self.res.id, alloc.id, alloc.site, step, why))
            self.state[alloc.id] = step

    def to(self, alloc: Allocation, target: State, why: str) -> None:
        """A direct transition (e.g. to cancelled), when the state machine allows it."""
        assert alloc.id is not None
        if target in TRANSITIONS[self.state[alloc.id]]:
            self.actions.append(Transition(self.res.id, alloc.id, alloc.site, target, why))
            self.state[alloc.id] = target

    def fail(self, alloc: Allocation, reason: str) -> None:
        assert alloc.id is not None
        if self.state[alloc.id] not in TERMINAL:
            self.actions.append(Fail(self.res.id, alloc.id, alloc.site, reason))
            self.state[alloc.id] = State.FAILED


def decide(obs: Observation) -> list[Action]:
    """What must happen for ``obs.res``, in order. Pure: no store, no schedd, no clock."""
    res = obs.res
    actions: list[Action] = []
    walk = _Walk(res, actions)
    dag_ads = obs.dag_ads
    dag = res.dag_cluster
    if dag is None and dag_ads:
        dag = int(dag_ads[0]["ClusterId"])
        actions.append(AdoptDag(res.id, dag))
    elif dag is None and obs.found_dag is not None:
        dag = obs.found_dag
        actions.append(AdoptDag(res.id, dag))
    if dag is None and not res.cancelled:
        actions.append(SubmitDag(res.id))
        for alloc in res.allocations:  # the executor names the DAG in the events
            walk.advance(alloc, State.SCHEDULED, "DAG submitted")
        return actions
    in_queue = bool(dag_ads)
    if res.cancelled and in_queue and dag is not None and dag_ads[0].get("JobStatus") != JobStatus.REMOVED:
        actions.append(RemoveDag(res.id, dag, f"reservation {res.id} cancelled"))
    if obs.end_file is not None and obs.end_file != res.end:
        actions.append(WriteEnd(res.id, res.end))
    for ad in obs.ads:
        if str(ad.get("DAGNodeName", "")).startswith("HOLD_") and ad.get("PccEnd") != res.end:
            actions.append(EditEnd(res.id, f"{ad['ClusterId']}.{ad['ProcId']}", res.end))
    finished = dag is not None and not in_queue
    for alloc in res.allocations:
        _allocation(obs, alloc, walk, finished)
    return actions


def _allocation(obs: Observation, alloc: Allocation, walk: _Walk, finished: bool) -> None:
    assert alloc.id is not None
    site = alloc.site
    boot, hold = obs.node(f"BOOT_{site}"), obs.node(f"HOLD_{site}")
    # A scheduler-universe boot waits for its time on hold as it was submitted (no process):
    # that is waiting, not a failure. Any other hold is one.
    held = next(
        (
            a
            for a in boot
            if a.get("JobStatus") == JobStatus.HELD and a.get("HoldReasonCode") != SUBMITTED_ON_HOLD
        ),
        None,
    )
    if held is not None:
        # A held node would stall its DAG for good: remove it first (DAGMan then counts the
        # node as failed; a retry that is held again is removed again, until the retries are
        # spent, the other sites go on and FINAL tears down), then mark the allocation failed.
        # If the removal fails, neither happens and the next pass retries.
        walk.actions.append(
            RemoveJob(obs.res.id, f"{held['ClusterId']}.{held['ProcId']}", "boot could not start in time")
        )
        walk.fail(alloc, f"boot job held: {held.get('HoldReason', '')}")
        return
    if alloc.state in TERMINAL:
        return
    history = [a for a in obs.history if a.get("DAGNodeName") == f"BOOT_{site}"]
    if site in obs.boot_history:
        history.append(obs.boot_history[site])
    failed = next((a for a in boot + history[:1] if a.get("PccState") == PccState.FAILED), None)
    if failed is not None:
        walk.fail(alloc, str(failed.get("PccMessage") or "boot failed"))
        return
    if hold:
        ad = hold[0]
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
        if fields != current:
            walk.actions.append(CopyStatus(obs.res.id, alloc.id, fields))
        state = PccState.parse(ad.get("PccState"))
        if ad.get("JobStatus") == JobStatus.RUNNING or state in TEARING_DOWN:
            # Released (at the end, or early by an operator): it tears its site down now.
            walk.advance(alloc, State.STOPPING, "teardown started")
        elif state in (PccState.RUNNING, PccState.DEGRADED):
            walk.advance(alloc, State.RUNNING, f"site reports {ad.get('PccMessage') or state}")
        elif state is PccState.LOST:
            walk.fail(alloc, f"lost: {ad.get('PccMessage') or 'the site reports no nodes for this cluster'}")
        elif state is PccState.ENDING:
            walk.advance(alloc, State.STOPPING, "the reservation ended")
        elif state is PccState.UNREACHABLE:  # no news, never an end: the state stays
            walk.advance(alloc, State.BOOTING, "cluster booted; its site does not answer")
        else:
            walk.advance(alloc, State.BOOTING, "cluster booted; waiting for its first status")
    elif boot:
        ad = boot[0]
        if ad.get("JobStatus") == JobStatus.RUNNING or PccState.parse(ad.get("PccState")) in (
            PccState.BOOTING,
            PccState.RETRYING,
        ):
            walk.advance(alloc, State.BOOTING, str(ad.get("PccMessage") or "boot job started"))
    if obs.node("FINAL") and walk.state[alloc.id] in (State.BOOTING, State.RUNNING):
        walk.advance(alloc, State.STOPPING, "teardown started")
    if not finished:
        return
    # Who tore the site down: its HOLD node at the end, or FINAL (when it ran: something
    # failed or the DAG was removed; it is skipped when every node succeeded).
    teardown = next((a for a in obs.history if a.get("DAGNodeName") == "FINAL"), None)
    at_end = next((a for a in obs.history if a.get("DAGNodeName") == f"HOLD_{site}"), None)
    state = walk.state[alloc.id]
    if (teardown is None and at_end is None) or state in TERMINAL:
        return
    said = [ad for ad in (teardown, at_end) if ad is not None]
    if not any(site in str(ad.get("PccTornDown") or "").split(",") for ad in said):
        walk.fail(alloc, f"teardown failed: {said[0].get('PccMessage', '')}")
    elif state is State.BOOTING and not any(a.get("DAGNodeName") == f"HOLD_{site}" for a in obs.history):
        walk.fail(alloc, "the boot never completed")
    elif state in (State.REQUESTED, State.SCHEDULED):
        if obs.res.cancelled:
            walk.to(alloc, State.CANCELLED, "cancelled before it booted")
        else:
            walk.fail(alloc, "the reservation ended before its cluster booted")
    else:
        walk.advance(alloc, State.STOPPED, "torn down")


# -- one pass ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    ok: bool = True
    seconds: float = 0.0
    jobs: int = 0
    submitted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    transitions: int = 0
    orphans: list[int] = field(default_factory=list)  # DAG clusters with no reservation
    monitors: list[str] = field(default_factory=list)  # site monitors submitted or removed
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.submitted or self.removed or self.transitions or self.monitors or self.errors)


def group_ads(ads: Iterable[Ad]) -> dict[str, list[Ad]]:
    """Queue ads by reservation id (the PccReservation attribute, else the batch name)."""
    by_res: dict[str, list[Ad]] = defaultdict(list)
    for ad in ads:
        key = ad.get("PccReservation") or ad.get("JobBatchName")
        if key:
            by_res[str(key)].append(ad)
    return by_res


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

    def reconcile_once(self) -> Outcome:
        """One pass; lets no exception escape (a failed step is retried by the next pass)."""
        t0 = time.monotonic()
        out = Outcome()
        try:
            with metrics.SCHEDD_QUERY_SECONDS.time():
                ads = self.condor.query(QUEUE_CONSTRAINT, PROJECTION)
        except PccError as exc:
            log.warning("reconcile: schedd query failed: %s; next pass retries", exc)
            metrics.RECONCILE_ERRORS.inc()
            return Outcome(ok=False, seconds=time.monotonic() - t0, errors=[str(exc)])
        out.jobs = len(ads)
        metrics.QUEUE_JOBS.set(len(ads))
        monitors = [a for a in ads if a.get("PccRole") == "monitor"]
        ads = [a for a in ads if a.get("PccRole") != "monitor"]
        self.keep_monitors(monitors, out)
        by_res = group_ads(ads)
        live = self.store.live_reservations(by_res)
        known = {r.id for r in live}
        try:  # boot nodes that left the queue, for every reservation in one history query
            boots = self.boot_history(x for r in live for x in self.boot_lookups(r, by_res.get(r.id, [])))
        except PccError as exc:
            log.warning("reconcile: history query failed: %s; next pass retries", exc)
            boots = None
        for res in live:
            try:
                obs = self.observe(res, by_res.get(res.id, []), boots)
                self.execute(decide(obs), out)
            except Exception as exc:  # one reservation's trouble must not stop the others
                log.exception("reservation %s: reconcile step failed; next pass retries", res.id)
                out.ok = False
                out.errors.append(f"{res.id}: {exc}")
        self._flag_orphan_dags(ads, known, out)
        out.seconds = time.monotonic() - t0
        metrics.RECONCILE_SECONDS.observe(out.seconds)
        if not out.ok:
            metrics.RECONCILE_ERRORS.inc()
        log.debug("reconcile: %s", out)
        return out

    def keep_monitors(self, ads: Sequence[Ad], out: Outcome) -> None:
        """One monitor job per configured site, started with the settings in force."""
        mine = [a for a in ads if a.get("PccController") == self.settings.controller_id]
        for action in decide_monitors(wanted_monitors(self.settings, self.env), mine):
            try:
                match action:
                    case SubmitMonitor(site):
                        cluster = submit_monitor(self.condor, self.settings, self.env, site, self.dag_owner)
                        log.info("site %s: monitor job %d submitted", site, cluster)
                    case RemoveMonitor(job, site, reason):
                        self.condor.remove(job, reason)
                        log.info("site %s: monitor job %s removed (%s)", site, job, reason)
                out.monitors.append(action.site)
            except PccError as exc:
                log.warning("site %s: monitor not kept (%s); the next pass retries", action.site, exc)
                out.ok = False
                out.errors.append(f"monitor {action.site}: {exc}")

    def remove_monitors(self) -> int:
        """Remove every monitor of this controller (a test's or a tool's clean-up; `pcc
        serve` keeps them running while it is down)."""
        return remove_monitors(self.condor, self.settings.controller_id)

    @staticmethod
    def _own(res: Reservation, queued: Sequence[Ad]) -> tuple[tuple[Ad, ...], list[Ad], int | None]:
        """The reservation's jobs (never older than it), its DAG's ads, and the DAG's id."""
        ads = tuple(a for a in queued if (a.get("QDate") or 0) >= res.created - QDATE_SLACK_S)
        dag_ads = [a for a in ads if is_dagman(a)]
        dag = (
            res.dag_cluster
            if res.dag_cluster is not None
            else (int(dag_ads[0]["ClusterId"]) if dag_ads else None)
        )
        return ads, dag_ads, dag

    def boot_lookups(self, res: Reservation, queued: Sequence[Ad]) -> list[tuple[int, str]]:
        """(DAG, site) of boot nodes that left the queue while their DAG goes on (did they fail?)."""
        ads, dag_ads, dag = self._own(res, queued)
        if dag is None or not dag_ads:
            return []
        names = {a.get("DAGNodeName") for a in ads}
        return [
            (dag, a.site)
            for a in res.allocations
            if a.state in (State.SCHEDULED, State.BOOTING)
            and not names & {f"BOOT_{a.site}", f"HOLD_{a.site}"}
        ]

    def boot_history(self, lookups: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Ad]:
        """The newest finished BOOT node of each (DAG, site): one history query for all."""
        wanted = sorted(set(lookups))
        if not wanted:
            return {}
        constraint = " || ".join(
            f'(DAGManJobId == {dag} && DAGNodeName == "BOOT_{site}")' for dag, site in wanted
        )
        found: dict[tuple[int, str], Ad] = {}
        for ad in self.condor.history(constraint, PROJECTION):  # most recent first
            key = (int(ad.get("DAGManJobId") or 0), str(ad.get("DAGNodeName", ""))[len("BOOT_") :])
            found.setdefault(key, ad)
        return found

    def observe(
        self, res: Reservation, queued: Sequence[Ad], boots: Mapping[tuple[int, str], Ad] | None = None
    ) -> Observation:
        """The reads :func:`decide` needs for ``res``: its queue ads, and history only where
        the queue no longer has the answer (``boots``: the boot nodes' history, when the pass
        has read it for every reservation at once)."""
        ads, dag_ads, dag = self._own(res, queued)
        found_dag = None
        if dag is None and not res.cancelled:  # submitted before a crash, and already gone?
            found = self.condor.history(
                f'JobBatchName == "{res.id}" && {DAGMAN_CONSTRAINT} '
                f"&& QDate >= {res.created - QDATE_SLACK_S}",
                ["ClusterId"],
                1,
            )
            found_dag = dag = int(found[0]["ClusterId"]) if found else None
        history: tuple[Ad, ...] = ()
        if dag is not None and not dag_ads and any(a.state not in TERMINAL for a in res.allocations):
            history = tuple(self.condor.history(f"DAGManJobId == {dag}", PROJECTION))
        lookups = self.boot_lookups(res, queued)
        if boots is None:
            boots = self.boot_history(lookups)
        boot_history = {site: boots[(d, site)] for d, site in lookups if (d, site) in boots}
        nodes = [str(a.get("DAGNodeName", "")) for a in ads]
        holds = {n[len("HOLD_") :] for n in nodes if n.startswith("HOLD_")}
        end_file = None
        if dag_ads and any(a.state not in TERMINAL and a.site not in holds for a in res.allocations):
            end_file = read_end(self.settings.dag_dir / res.id)
        return Observation(res, ads, history, found_dag, boot_history, end_file)

    def execute(self, actions: Sequence[Action], out: Outcome) -> None:
        """Perform the actions in order, each recorded when it succeeds; the first failure
        stops the rest (they are decided again by the next pass)."""
        try:
            self._execute(actions, out)
        except IllegalTransition as exc:  # the service (a cancel) moved it meanwhile
            log.info("reservation %s: %s; the next pass decides again", actions[0].rid, exc)

    def _execute(self, actions: Sequence[Action], out: Outcome) -> None:
        dag: int | None = None
        for action in actions:
            match action:
                case AdoptDag(rid, cluster):
                    self.store.set_dag(rid, cluster)
                    log.info("reservation %s: adopted DAG %d", rid, cluster)
                case SubmitDag(rid):
                    res = self.store.reservation(rid)
                    if res.dag_cluster is not None or res.cancelled:  # another pass got here first
                        return
                    dag = submit_reservation(self.condor, res, self.settings, self.env, self.dag_owner)
                    self.store.set_dag(rid, dag)
                    out.submitted.append(rid)
                    log.info("reservation %s: DAG %d submitted", rid, dag)
                case RemoveDag(rid, cluster, reason):
                    self.condor.remove(cluster, reason)
                    out.removed.append(rid)
                    log.info(
                        "reservation %s: cancelled; DAG %d removed, its FINAL node tears down", rid, cluster
                    )
                case WriteEnd(rid, end):
                    write_end(self.settings.dag_dir / rid, end)
                    log.info("reservation %s: end file now says %d (for HOLD nodes still to come)", rid, end)
                case EditEnd(rid, job, end):
                    self.condor.edit(job, "PccEnd", end)
                    log.info("reservation %s: HOLD job %s now ends at %d", rid, job, end)
                case RemoveJob(rid, job, reason):
                    self.condor.remove(job, reason)
                    log.info("reservation %s: job %s removed (%s)", rid, job, reason)
                case CopyStatus(rid, alloc_id, fields):
                    self.store.update_allocation(alloc_id, **fields)
                case Transition(rid, alloc_id, site, target, why):
                    why = why.replace("DAG submitted", f"DAG {dag} submitted") if dag is not None else why
                    self._transition(rid, alloc_id, site, target, why, out)
                case Fail(rid, alloc_id, site, reason):
                    self._fail(rid, alloc_id, site, reason, out)

    def _transition(self, rid: str, alloc_id: int, site: str, target: State, why: str, out: Outcome) -> None:
        if self.store.transition(alloc_id, target, why):
            out.transitions += 1
            self._observe_metrics(rid, site, target)
            log.info("reservation %s site %s: %s (%s)", rid, site, target, why)

    def _fail(self, rid: str, alloc_id: int, site: str, reason: str, out: Outcome) -> None:
        if self.store.transition(alloc_id, State.FAILED, reason, reason=reason):
            out.transitions += 1
            metrics.BOOT_FAILURES.labels(site, metrics.failure_kind(reason)).inc()
            log.warning("reservation %s site %s: failed: %s", rid, site, reason)

    def _observe_metrics(self, rid: str, site: str, step: State) -> None:
        """Boot duration (booting -> running) and teardown delay (end -> stopped)."""
        now = time.time()
        if step is State.RUNNING:
            started = [
                e.time for e in self.store.events(rid) if e.site == site and e.to_state == State.BOOTING.value
            ]
            if started:
                metrics.BOOT_SECONDS.labels(site).observe(now - started[-1])
        elif step is State.STOPPED:
            end = self.store.reservation(rid).end
            metrics.TEARDOWN_DELAY.labels(site).observe(max(0.0, now - end))

    def _flag_orphan_dags(self, ads: Sequence[Ad], known: set[str], out: Outcome) -> None:
        """DAGs of PCC whose reservation is not in this store (another controller's, or a
        reset store's): flagged, never touched."""
        candidates = {
            str(ad.get("JobBatchName", "")) for ad in ads if is_dagman(ad) and ad.get("PccReservation")
        } - known
        if not candidates:
            return
        exists = self.store.existing_ids(candidates)
        for ad in ads:
            name = str(ad.get("JobBatchName", ""))
            if is_dagman(ad) and ad.get("PccReservation") and name in candidates:
                if name in exists:
                    continue  # a finished reservation whose DAG is still leaving the queue
                out.orphans.append(int(ad["ClusterId"]))
                log.warning(
                    "orphan DAG %s: reservation %s is not in the store",
                    ad["ClusterId"],
                    ad.get("PccReservation"),
                )
