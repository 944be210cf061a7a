"""When is there room? A site's free capacity over time, and the earliest windows in which a
request fits at all its sites at once (pure functions over bookings, by admission's rule)."""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from pcc.common.errors import UserInputError
from pcc.controller.admission import Booking, peak_usage


@dataclass(frozen=True)
class Step:
    """Free capacity on the half-open interval ``[begin, end)``, never below 0."""

    begin: int
    end: int
    free_cpus: int
    free_memory_gb: float


def free_steps(cpus: int, memory_gb: float, bookings: Iterable[Booking], begin: int, end: int) -> list[Step]:
    """The step function of free CPUs and memory at one site over ``[begin, end)``.

    Consecutive steps cover exactly ``[begin, end)``; adjacent steps with equal values are
    merged. Free capacity is capacity minus what overlapping bookings hold, clamped at 0 where
    the calendar is overbooked. ``begin >= end`` gives ``[]``.
    """
    if begin >= end:
        return []
    # Deltas of CPUs and memory in use at each instant where a booking starts or ends inside
    # the interval. Memory is summed exactly (as fractions) so that equal levels compare equal.
    deltas: dict[int, tuple[int, Fraction]] = {begin: (0, Fraction(0))}
    for b in bookings:
        lo, hi = max(b.begin, begin), min(b.end, end)
        if lo < hi:
            mem = Fraction(b.memory_gb)
            c, m = deltas.get(lo, (0, Fraction(0)))
            deltas[lo] = (c + b.cpus, m + mem)
            if hi < end:
                c, m = deltas.get(hi, (0, Fraction(0)))
                deltas[hi] = (c - b.cpus, m - mem)
    times = sorted(deltas)
    steps: list[Step] = []
    used_cpus, used_mem = 0, Fraction(0)
    for i, t in enumerate(times):
        dc, dm = deltas[t]
        used_cpus, used_mem = used_cpus + dc, used_mem + dm
        nxt = times[i + 1] if i + 1 < len(times) else end
        free_c, free_m = max(0, cpus - used_cpus), max(0.0, memory_gb - float(used_mem))
        if steps and (steps[-1].free_cpus, steps[-1].free_memory_gb) == (free_c, free_m):
            steps[-1] = Step(steps[-1].begin, nxt, free_c, free_m)
        else:
            steps.append(Step(t, nxt, free_c, free_m))
    return steps


@dataclass(frozen=True)
class SiteDemand:
    """What a request wants at one site, with what the site has and already holds."""

    site: str
    cpus_capacity: int
    memory_capacity_gb: float
    bookings: tuple[Booking, ...]  # what the site already holds
    cpus: int  # what the request wants there, including the frontend (as Booking.cpus)
    memory_gb: float


@dataclass(frozen=True)
class Window:
    begin: int
    end: int


def earliest_windows(
    demands: Sequence[SiteDemand],
    duration: int,
    not_before: int,
    not_after: int | None = None,
    count: int = 3,
) -> list[Window]:
    """Up to ``count`` windows ``[t, t + duration)``, earliest first with strictly increasing
    starts, in which every demand fits at its site at every instant, with
    ``not_before <= t`` and ``t + duration <= not_after`` (when given).

    A demand fits by :func:`admission.admit`'s rule: the peak of the site's bookings together
    with the new one stays within capacity, for CPUs and for memory.

    Only ``not_before`` and the booking ends after it (at any demanded site) are tried. That
    suffices: let ``t > not_before`` be a feasible start at which no booking ends. Every booking
    in use just before ``t`` is still in use at ``t``, so moving the window a little earlier
    adds only instants no busier than ``t`` and drops some from its end; the earlier window
    fits too, so ``t`` was not the earliest. Free capacity only grows at a booking's end. The
    later windows are the next feasible tried starts, not ``t + 1`` (nearly the same window).

    Raises :class:`UserInputError` for no demands, a site named twice, ``duration <= 0``, or a
    demand that is negative or larger than its site's whole capacity (it never fits).
    """
    if not demands:
        raise UserInputError("name at least one site to look for a slot at")
    if duration <= 0:
        raise UserInputError(f"a slot must last longer than 0 seconds (got {duration})")
    names = [d.site for d in demands]
    if len(set(names)) != len(names):
        raise UserInputError(f"a site may appear once per request, got {names}")
    for d in demands:
        if d.cpus < 0 or not math.isfinite(d.memory_gb) or d.memory_gb < 0:
            raise UserInputError(
                f"site {d.site}: CPUs and memory must be >= 0 (got {d.cpus} CPUs, {d.memory_gb:g} GB)"
            )
        if d.cpus > d.cpus_capacity or d.memory_gb > d.memory_capacity_gb:
            raise UserInputError(
                f"site {d.site} has {d.cpus_capacity} CPUs and {d.memory_capacity_gb:g} GB in all; "
                f"asked {d.cpus} CPUs and {d.memory_gb:g} GB"
            )
    starts = sorted({not_before} | {b.end for d in demands for b in d.bookings if b.end > not_before})
    calendars = [_Calendar(d.bookings) for d in demands]
    windows: list[Window] = []
    i = 0
    while i < len(starts) and len(windows) < count:
        t = starts[i]
        if not_after is not None and t + duration > not_after:
            break
        blocked_until = None
        for d, cal in zip(demands, calendars, strict=True):
            blocked_until = _blocked_until(d, cal.overlapping(t, t + duration), t, t + duration)
            if blocked_until is not None:
                break
        if blocked_until is None:
            windows.append(Window(t, t + duration))
            i += 1
        else:
            # Every instant of [t0, t1) overflows whatever window covers it, so no start
            # before t1 can fit: skip to the first one at or after it.
            i = max(i + 1, bisect.bisect_left(starts, blocked_until))
    return windows


def _blocked_until(d: SiteDemand, overlapping: list[Booking], begin: int, end: int) -> int | None:
    """``None`` if ``d`` fits in ``[begin, end)`` beside ``overlapping``; otherwise the end of
    the first stretch where it does not (as :func:`admission.admit` would find it)."""
    new = Booking(begin, end, d.cpus, d.memory_gb)
    checks: tuple[tuple[float, Callable[[Booking], float]], ...] = (
        (d.cpus_capacity, lambda b: b.cpus),
        (d.memory_capacity_gb, lambda b: b.memory_gb),
    )
    for capacity, amount in checks:
        level, _, t1 = peak_usage([*overlapping, new], begin, end, amount)
        if level > capacity:
            return t1
    return None


class _Calendar:
    """One site's bookings, swept once by windows that only move later: ``overlapping``
    yields the bookings that overlap each window without re-sorting the whole calendar."""

    def __init__(self, bookings: Iterable[Booking]) -> None:
        self._by_begin = sorted(enumerate(bookings), key=lambda ib: ib[1].begin)
        self._next = 0
        self._ends: list[tuple[int, int]] = []  # heap of (end, index) of bookings taken in
        self._active: dict[int, Booking] = {}

    def overlapping(self, begin: int, end: int) -> list[Booking]:
        """Bookings with ``begin < b.end`` and ``b.begin < end``, in their original order (so
        that sums come out exactly as admission's over the whole calendar); ``begin`` and
        ``end`` must not decrease from one call to the next."""
        while self._next < len(self._by_begin) and self._by_begin[self._next][1].begin < end:
            index, booking = self._by_begin[self._next]
            self._active[index] = booking
            heapq.heappush(self._ends, (booking.end, index))
            self._next += 1
        while self._ends and self._ends[0][0] <= begin:
            _, index = heapq.heappop(self._ends)
            del self._active[index]
        return [self._active[i] for i in sorted(self._active)]
