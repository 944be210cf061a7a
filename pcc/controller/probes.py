"""Site health probes: `pragma check --json` at every site, in parallel with bounded
concurrency and a hard timeout per site, so one hung site never delays the others or the
loop. Also the site ads (``MyType = "PccSite"``) advertised to the HTCondor collector."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pcc.common.errors import PccError
from pcc.common.protocol import CheckReport
from pcc.controller import metrics
from pcc.controller.settings import Settings, SiteEntry
from pcc.controller.siteclient import SiteClient
from pcc.controller.store import Store

if TYPE_CHECKING:
    from pcc.condor.adapter import CondorAdapter

log = logging.getLogger(__name__)

UP, DEGRADED, DOWN = "up", "degraded", "down"


@dataclass(frozen=True)
class Probe:
    site: str
    health: str  # up | degraded | down
    reason: str
    seconds: float
    time: float
    report: CheckReport | None = None

    @property
    def images(self) -> list[str] | None:
        return list(self.report.images) if self.report and self.report.images is not None else None


def classify(site: str, report: CheckReport | None, error: str, seconds: float, now: float) -> Probe:
    """A `pragma check` answer (or the failure to get one) as a health state."""
    if report is None:
        return Probe(site, DOWN, error or "no answer", seconds, now)
    if report.ok and not report.problems:
        return Probe(site, UP, "", seconds, now, report)
    reason = "; ".join(report.problems) or "the site reports a problem"
    return Probe(site, DEGRADED, reason, seconds, now, report)


def probe_one(site: SiteEntry, timeout: float) -> Probe:
    t0 = time.monotonic()
    try:
        report = SiteClient(site, timeout=timeout).check()
        return classify(site.name, report, "", time.monotonic() - t0, time.time())
    except Exception as exc:  # whatever a site answers, it is that site's verdict alone
        text = str(exc) if isinstance(exc, PccError) else f"site {site.name}: {type(exc).__name__}: {exc}"
        return classify(site.name, None, text, time.monotonic() - t0, time.time())


def probe_sites(sites: Sequence[SiteEntry], timeout: float, max_workers: int = 64) -> list[Probe]:
    """Probe all sites, at most ``max_workers`` at once. Each probe is bounded by ``timeout``;
    a site still silent when its turn's time is up (plus a second of grace) is ``down``, and
    the pass goes on without waiting for it."""
    if not sites:
        return []
    workers = max(1, min(max_workers, len(sites)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
    t0 = time.monotonic()
    futures = {pool.submit(probe_one, site, timeout): site for site in sites}
    rounds = -(-len(sites) // workers)  # queued probes get their own full timeout
    done, _ = wait(futures, timeout=rounds * timeout + 1.0)
    out = []
    for future, site in futures.items():
        if future in done:
            out.append(future.result())
        else:
            out.append(
                Probe(site.name, DOWN, f"no answer within {timeout:g} s", time.monotonic() - t0, time.time())
            )
    pool.shutdown(wait=False, cancel_futures=True)  # hung probes finish (or time out) on their own
    return out


def site_ad(site: SiteEntry, probe: Probe) -> dict[str, Any]:
    """The collector ad of a site (plain values; the advertiser makes the ClassAd)."""
    r = probe.report
    return {
        "MyType": "PccSite",
        "Name": site.name,
        "PccHealth": probe.health,
        "PccHealthReason": probe.reason,
        "PccTotalCpus": r.cpus.total if r else site.cpus,
        "PccFreeCpus": r.cpus.free if r else 0,
        "PccTotalMemoryMb": r.memory_mb.total if r else int(site.memory_gb * 1024),
        "PccFreeMemoryMb": r.memory_mb.free if r else 0,
        "PccVersion": r.pragma_version if r else "",
        "PccDeploymentType": (r.deployment_type if r else "") or site.deployment_type,
        "PccEnt": r.ent_enabled if r else site.ent,
        "PccLastProbe": int(probe.time),
    }


def run_probes(settings: Settings, store: Store, condor: CondorAdapter | None) -> list[Probe]:
    """The probe job: probe every site, record health (changes are events), refresh the image
    catalog the service checks reservations against, export the site metrics and publish the
    sites' collector ads. Scheduled beside the reconcile loop; never raises."""
    sites = {s.name: s for s in settings.sites}
    found = probe_sites(list(sites.values()), settings.timings.ssh_timeout_s)
    ads = []
    for p in found:
        try:
            before = store.record_health(
                p.site,
                p.health,
                p.reason,
                p.time,
                p.seconds,
                p.report.pragma_version if p.report else "",
                p.report.staging_path if p.report else "",
            )
            if p.images is not None:
                store.set_site_images(p.site, p.images)
        except Exception as exc:  # a busy store must not stop the other sites' records
            log.warning("site %s: cannot record its probe: %s; the next probe retries", p.site, exc)
            continue
        if before is not None:
            log.log(
                logging.WARNING if p.health != UP else logging.INFO,
                "site %s: %s -> %s%s",
                p.site,
                before or "unknown",
                p.health,
                f" ({p.reason})" if p.reason else "",
            )
        ads.append(site_ad(sites[p.site], p))
        _export(p)
    try:
        if condor is not None:
            known = condor.collector_names("PccSite")
            condor.advertise(ads, sorted(set(known) - set(sites)), "PccSite")
    except Exception as exc:  # the collector's trouble must not stop the probes
        log.warning("cannot publish site ads: %s", exc)
    return found


def _export(p: Probe) -> None:
    metrics.SITE_UP.labels(p.site).set(0 if p.health == DOWN else 1)
    metrics.SITE_HEALTHY.labels(p.site).set(1 if p.health == UP else 0)
    metrics.SITE_PROBE_SECONDS.labels(p.site).set(p.seconds)
    if p.report is not None:
        metrics.SITE_LAST_SUCCESS.labels(p.site).set(p.time)
        for kind in ("total", "free", "reserved"):
            metrics.SITE_CPUS.labels(p.site, kind).set(getattr(p.report.cpus, kind))
            metrics.SITE_MEMORY.labels(p.site, kind).set(getattr(p.report.memory_mb, kind) * 1024 * 1024)
