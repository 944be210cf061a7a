"""The site monitors as HTCondor jobs: one local-universe job per configured site
(``submit_templates/monitor.sub``, running ``pcc-job monitor --site S``).

:func:`decide_monitors` is pure: the configured sites and the monitor ads of this
controller in, what to submit and what to remove out. A monitor carries a digest of what it
was started with (the site's entry, the timings it uses, the job environment), so a site
whose settings change gets a new monitor, and a site that left the configuration loses its
own. The reconcile pass runs it (so `pcc serve` keeps them), and :func:`submit_monitor` and
the adapter's removal are the thin steps after it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2

from pcc.common.templates import render
from pcc.condor.adapter import CondorAdapter, JobStatus
from pcc.condor.dag import TEMPLATES, JobEnvironment
from pcc.controller.settings import Settings, SiteEntry

MONITOR_TEMPLATE = "monitor.sub"


def quoted(text: str) -> str:
    return classad2.quote(text)


def monitor_constraint(controller: str) -> str:
    """This controller's monitor jobs (several controllers may share a pool)."""
    return f'PccRole =?= "monitor" && PccController =?= {quoted(controller)}'


def monitor_digest(site: SiteEntry, settings: Settings, env: JobEnvironment) -> str:
    """What a monitor was started with, condensed: when it differs, the monitor is replaced."""
    t = settings.timings
    text = repr((site, t.watch_poll_s, t.ssh_timeout_s, env))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SubmitMonitor:
    site: str


@dataclass(frozen=True)
class RemoveMonitor:
    job: str
    site: str
    reason: str


MonitorAction = SubmitMonitor | RemoveMonitor


def decide_monitors(wanted: Mapping[str, str], ads: Iterable[Mapping[str, Any]]) -> list[MonitorAction]:
    """``wanted``: site -> digest of the monitor it should have. ``ads``: this controller's
    monitor jobs in the queue. One live monitor per site (removed ones are on their way out);
    extra ones, stale ones and those of sites no longer configured are removed. Pure."""
    actions: list[MonitorAction] = []
    kept: set[str] = set()
    for ad in sorted(ads, key=lambda a: (a.get("ClusterId") or 0, a.get("ProcId") or 0)):
        if ad.get("JobStatus") == JobStatus.REMOVED:
            continue
        job = f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
        site = str(ad.get("PccSite") or "")
        if site not in wanted:
            actions.append(RemoveMonitor(job, site, f"site {site} is no longer configured"))
        elif ad.get("PccDigest") != wanted[site]:
            actions.append(RemoveMonitor(job, site, f"site {site}'s settings changed"))
        elif site in kept:
            actions.append(RemoveMonitor(job, site, f"site {site} has another monitor"))
        else:
            kept.add(site)
    actions.extend(SubmitMonitor(site) for site in sorted(wanted) if site not in kept)
    return actions


def log_dir(settings: Settings) -> Path:
    return settings.state_dir / "monitors"


def render_monitor(settings: Settings, env: JobEnvironment, site: SiteEntry) -> str:
    """The submit description of ``site``'s monitor (pure)."""
    return render(
        TEMPLATES,
        MONITOR_TEMPLATE,
        pcc_job=env.pcc_job,
        environment=env.render(),
        site=site.name,
        controller=settings.controller_id,
        digest=monitor_digest(site, settings, env),
        log_dir=log_dir(settings),
    )


def wanted_monitors(settings: Settings, env: JobEnvironment) -> dict[str, str]:
    return {s.name: monitor_digest(s, settings, env) for s in settings.sites}


def submit_monitor(
    condor: CondorAdapter, settings: Settings, env: JobEnvironment, site: str, owner: str | None
) -> int:
    """Submit ``site``'s monitor; its log directory belongs to the pool's user."""
    directory = log_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    if owner and os.geteuid() == 0:
        user = pwd.getpwnam(owner)
        os.chown(directory, user.pw_uid, user.pw_gid)
    return condor.submit(render_monitor(settings, env, settings.site(site))).cluster


def remove_monitors(condor: CondorAdapter, controller: str, sites: Sequence[str] | None = None) -> int:
    """Remove this controller's monitors (of ``sites``, or all); how many."""
    constraint = monitor_constraint(controller)
    if sites is not None:
        if not sites:
            return 0
        constraint += " && (" + " || ".join(f"PccSite =?= {quoted(s)}" for s in sites) + ")"
    return condor.remove(constraint, "the controller removed its site monitors")
