"""Admission: does a new allocation fit a site's capacity at every instant of its window?

Intervals are half-open ``[begin, end)``. The check sweeps every start and end inside the
window, so three reservations that pairwise fit but together overflow are refused.
An allocation's CPUs include its frontend's ``FRONTEND_CPUS``; the rest go to compute nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pcc.common.errors import CapacityError
from pcc.common.timefmt import human

FRONTEND_CPUS = 1


@dataclass(frozen=True)
class Booking:
    begin: int
    end: int
    cpus: int  # including the frontend
    memory_gb: float


def peak_usage(
    bookings: Iterable[Booking], begin: int, end: int, amount: Callable[[Booking], float]
) -> tuple[float, int, int]:
    """The highest total of ``amount`` in ``[begin, end)`` and where it first occurs."""
    points: list[tuple[int, float]] = []
    for b in bookings:
        lo, hi = max(b.begin, begin), min(b.end, end)
        if lo < hi:
            points.append((lo, amount(b)))
            points.append((hi, -amount(b)))
    points.sort(key=lambda p: (p[0], p[1]))  # at one instant, ends (negative) before starts
    level, best, best_from, best_to = 0.0, 0.0, begin, end
    for i, (t, delta) in enumerate(points):
        level += delta
        if level > best:
            nxt = next((p[0] for p in points[i + 1 :] if p[0] > t), end)
            best, best_from, best_to = level, t, nxt
    return best, best_from, best_to


def admit(
    site: str, cpus_capacity: int, memory_capacity: float, existing: Iterable[Booking], new: Booking
) -> None:
    """Raise :class:`CapacityError` naming the site, the interval and the shortfall if ``new``
    does not fit together with ``existing`` at some instant."""
    bookings = [*existing, new]
    checks: tuple[tuple[str, float, Callable[[Booking], float], str], ...] = (
        ("CPUs", cpus_capacity, lambda b: b.cpus, ""),
        ("memory", memory_capacity, lambda b: b.memory_gb, " GB"),
    )
    for label, capacity, amount, unit in checks:
        level, t0, t1 = peak_usage(bookings, new.begin, new.end, amount)
        if level > capacity:
            short = level - capacity
            raise CapacityError(
                f"site {site} is short of {label} from {human(t0)} to {human(t1)}: "
                f"{level:g}{unit} would be in use, capacity {capacity:g}{unit} ({short:g}{unit} short)"
            )
