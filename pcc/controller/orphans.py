"""The orphan scan, a scheduled job of its own: clusters at the sites that no live
reservation (or running teardown) accounts for. Sites are asked in parallel, each bounded by
the SSH timeout; orphans are flagged, never destroyed: an operator decides."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from pcc.condor.adapter import CondorAdapter
from pcc.controller.model import TERMINAL
from pcc.controller.settings import Settings, SiteEntry
from pcc.controller.siteclient import SiteClient
from pcc.controller.store import Store

log = logging.getLogger(__name__)


def accounted_for(store: Store, queued: set[str]) -> set[tuple[str, str]]:
    """(site, cluster) pairs that a live reservation, or one with jobs still queued, owns."""
    return {
        (a.site, r.id)
        for r in store.live_reservations(queued)
        for a in r.allocations
        if a.state not in TERMINAL or r.id in queued
    }


def find_orphans(settings: Settings, store: Store, condor: CondorAdapter | None) -> list[tuple[str, str]]:
    """Ask every site for its clusters; return (site, cluster) for those nobody owns."""
    if not settings.sites:
        return []
    queued: set[str] = set()
    if condor is not None:
        ads = condor.query("PccReservation =!= undefined", ["PccReservation"])
        queued = {str(ad["PccReservation"]) for ad in ads if ad.get("PccReservation")}
    owned = accounted_for(store, queued)
    timeout = settings.timings.ssh_timeout_s

    def clusters(site: SiteEntry) -> set[str]:
        return set(SiteClient(site, timeout=timeout).clusters())

    found: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=min(8, len(settings.sites))) as pool:
        futures = {pool.submit(clusters, site): site for site in settings.sites}
        for future, site in futures.items():
            try:
                names = future.result(timeout=timeout * 3)
            except Exception as exc:  # an unreachable site is the probes' business
                log.debug("site %s: cannot list clusters: %s", site.name, exc)
                continue
            for name in sorted(names - {rid for s, rid in owned if s == site.name}):
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
