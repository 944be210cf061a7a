"""`pcc-job monitor --site S`: one site's monitor, an HTCondor job of its own (see
``submit_templates/monitor.sub``).

Once per poll it asks the site for every cluster it runs (`pragma list cluster`, one
command over one SSH login it keeps) and reads the HOLD jobs of this controller at that
site from the schedd (one query with a projection). :func:`wanted_status` then says, per
job, what its live attributes should be, and :func:`plan_edits` turns the differences into
batched edits: one ``Schedd.edit`` per attribute and value, over the list of jobs that take
it, with ``PccState`` last (a reader that sees the new state also sees its details). Only
values that changed are written: every edit grows the schedd's job queue log.

A site that does not answer marks its clusters ``unreachable`` with the reason and never
ends a reservation; a cluster the site stops reporting is ``lost`` only after
:data:`LOST_AFTER` polls in a row without it (one empty answer is not proof).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import classad2

from pcc.common.errors import PccError
from pcc.common.jobstate import PccState
from pcc.common.protocol import ClusterStatus
from pcc.condor.adapter import JobStatus

log = logging.getLogger("pcc.jobs.monitor")

LIVE = ("PccNodesUp", "PccNodesTotal", "PccFrontend", "PccPublicIP", "PccMessage", "PccState")
HOLD_PROJECTION = ["ClusterId", "ProcId", "PccReservation", *LIVE]
LOST_AFTER = 3  # polls in a row without the cluster before it is reported lost
MESSAGE_MAX = 500


def hold_constraint(controller: str, site: str) -> str:
    """The HOLD jobs one site's monitor writes into: this controller's, at that site, still
    waiting on hold (a released one is tearing its site down and writes its own state)."""
    return (
        f'PccRole =?= "hold" && PccController =?= {classad2.quote(controller)}'
        f" && PccSite =?= {classad2.quote(site)} && JobStatus == {JobStatus.HELD}"
    )


@dataclass(frozen=True)
class Listing:
    """One poll's answer from the site: its clusters by name, or why there is none."""

    clusters: Mapping[str, ClusterStatus] | None
    error: str = ""


def node_attrs(status: ClusterStatus) -> dict[str, Any]:
    """A cluster's node counts and login as a job ad carries them (a boot job's too)."""
    fe = status.frontend
    return {
        "PccNodesUp": status.nodes_up,
        "PccNodesTotal": status.nodes_total,
        "PccFrontend": fe.name if fe else "",
        "PccPublicIP": status.login_address,
    }


def status_attrs(status: ClusterStatus) -> dict[str, Any]:
    """A cluster's live attributes as a HOLD job's ad carries them, its state last."""
    state, message = status.verdict()
    return {**node_attrs(status), "PccMessage": message, "PccState": str(state)}


def wanted_status(ad: Mapping[str, Any], listing: Listing, misses: int) -> dict[str, Any]:
    """What the live attributes of one HOLD job should be after this poll (only those to
    set; an empty dict leaves the ad alone). ``misses``: polls in a row, this one included,
    whose listing lacked the cluster. Pure."""
    if listing.clusters is None:
        message = f"site unreachable: {listing.error}"[:MESSAGE_MAX]
        return {"PccMessage": message, "PccState": str(PccState.UNREACHABLE)}
    status = listing.clusters.get(str(ad.get("PccReservation") or ""))
    if status is None:
        if misses < LOST_AFTER:
            return {}
        return {
            "PccMessage": f"the site has reported no nodes for this cluster {misses} polls in a row",
            "PccState": str(PccState.LOST),
        }
    return status_attrs(status)


Edit = tuple[str, Any, list[str]]  # attribute, value, job ids


def plan_edits(ads: Iterable[Mapping[str, Any]], wanted: Mapping[str, Mapping[str, Any]]) -> list[Edit]:
    """Batched edits that bring each job's ad to ``wanted[job id]``: one per attribute and
    value, naming every job that takes it, only where the ad differs; ``PccState`` edits
    come last. Pure."""
    groups: dict[tuple[str, Any], list[str]] = defaultdict(list)
    for ad in ads:
        job = f"{ad['ClusterId']}.{ad['ProcId']}"
        for attr, value in wanted.get(job, {}).items():
            if ad.get(attr) != value:
                groups[(attr, value)].append(job)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0] == "PccState", kv[0][0], str(kv[0][1])))
    return [(attr, value, sorted(jobs)) for (attr, value), jobs in ordered]


@dataclass
class MonitorState:
    """What one monitor remembers between polls: missed listings per reservation."""

    misses: dict[str, int] = field(default_factory=dict)

    def count(self, ads: Iterable[Mapping[str, Any]], listing: Listing) -> dict[str, int]:
        """Update the miss counts for this poll; returns them by reservation."""
        if listing.clusters is None:
            return dict(self.misses)
        seen: dict[str, int] = {}
        for ad in ads:
            rid = str(ad.get("PccReservation") or "")
            seen[rid] = 0 if rid in listing.clusters else self.misses.get(rid, 0) + 1
        self.misses = seen
        return seen


@dataclass
class PollResult:
    jobs: int = 0
    edits: int = 0
    reachable: bool = True
    seconds: float = 0.0


def poll_once(condor: Any, client: Any, constraint: str, state: MonitorState) -> PollResult:
    """One poll: read the site and the ads, write what changed. Raises PccError when the
    schedd cannot be read or written (the next poll tries again)."""
    t0 = time.monotonic()
    try:
        listing = Listing(client.clusters())
    except PccError as exc:
        listing = Listing(None, str(exc))
    ads = condor.query(constraint, HOLD_PROJECTION)
    misses = state.count(ads, listing)
    wanted = {
        f"{ad['ClusterId']}.{ad['ProcId']}": wanted_status(
            ad, listing, misses.get(str(ad.get("PccReservation")), 0)
        )
        for ad in ads
    }
    edits = plan_edits(ads, wanted)
    for attr, value, jobs in edits:
        condor.edit(jobs if len(jobs) > 1 else jobs[0], attr, value)
    written = sum(len(jobs) for _, _, jobs in edits)
    return PollResult(len(ads), written, listing.clusters is not None, time.monotonic() - t0)


def run_monitor(
    site: str,
    poll_s: float,
    condor: Any,
    client: Any,
    constraint: str,
    stop: threading.Event | None = None,
    after_poll: Callable[[], None] | None = None,
) -> None:
    """Poll until ``stop`` is set (a job: forever). A poll that fails is logged and the next
    one tries again; nothing a site or the schedd does ends the monitor. ``after_poll``
    runs after each poll (the job reports its own logins there)."""
    stop = stop or threading.Event()
    state = MonitorState()
    reachable = True
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            result = poll_once(condor, client, constraint, state)
            if result.reachable != reachable:
                level = logging.INFO if result.reachable else logging.WARNING
                what = "answers again" if result.reachable else "does not answer"
                log.log(level, "site %s: %s", site, what)
                reachable = result.reachable
            log.log(
                logging.INFO if result.edits else logging.DEBUG,
                "site %s: %d HOLD jobs, %d values written in %.0f ms",
                site,
                result.jobs,
                result.edits,
                result.seconds * 1000,
            )
            if after_poll is not None:
                after_poll()
        except Exception as exc:  # the schedd away for a moment must not end the monitor
            log.warning("site %s: poll failed (%s); the next poll retries", site, exc)
        stop.wait(max(0.2, poll_s - (time.monotonic() - t0)))
