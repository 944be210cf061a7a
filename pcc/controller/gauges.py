"""The gauges job: reservations and allocations by state, and each site's peak reserved
CPUs over the next 24 hours, refreshed on a schedule of its own (not by every reconcile
pass: counting the whole store is the one read whose cost follows the history)."""

from __future__ import annotations

import time

from pcc.controller import metrics
from pcc.controller.admission import Booking, peak_usage
from pcc.controller.model import State
from pcc.controller.settings import Settings
from pcc.controller.store import Store


def export_gauges(settings: Settings, store: Store, now: float | None = None) -> None:
    now = time.time() if now is None else now
    allocs, reservations = store.state_counts()
    for state in State:
        metrics.ALLOCATIONS.labels(state.value).set(allocs.get(state.value, 0))
        metrics.RESERVATIONS.labels(state.value).set(reservations.get(state.value, 0))
    for site in settings.sites:
        bookings = [
            Booking(r.begin, r.end, a.cpus, a.memory_gb)
            for a, r in store.bookings_at(site.name)
            if r.end > now and r.begin < now + 86400
        ]
        peak, _, _ = peak_usage(bookings, int(now), int(now + 86400), lambda b: b.cpus)
        metrics.SITE_CPUS_NEXT_DAY.labels(site.name).set(peak)
