"""Free capacity over time and the earliest windows a request fits in, against brute force."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcc.common.errors import CapacityError, UserInputError
from pcc.controller.admission import Booking, admit
from pcc.controller.slots import SiteDemand, Step, Window, earliest_windows, free_steps


def demand(
    site: str = "a", bookings: tuple[Booking, ...] = (), cpus: int = 1, memory_gb: float = 1.0
) -> SiteDemand:
    return SiteDemand(site, 4, 8.0, bookings, cpus, memory_gb)


def test_an_empty_calendar_gives_one_window_at_not_before() -> None:
    assert earliest_windows([demand()], 30, not_before=10) == [Window(10, 40)]


def test_a_full_site_gives_a_window_at_the_end_of_the_blocking_booking() -> None:
    full = (Booking(0, 100, 4, 1.0),)
    assert earliest_windows([demand(bookings=full)], 30, not_before=0) == [Window(100, 130)]


def test_memory_blocks_as_cpus_do() -> None:
    full = (Booking(0, 100, 1, 8.0),)
    assert earliest_windows([demand(bookings=full)], 30, not_before=0) == [Window(100, 130)]


def test_two_sites_blocked_at_different_times_meet_in_the_gap_where_both_are_free() -> None:
    a = demand("a", (Booking(0, 50, 4, 1.0),))
    b = demand("b", (Booking(60, 100, 4, 1.0),))
    assert earliest_windows([a, b], 10, not_before=0, count=1) == [Window(50, 60)]
    assert earliest_windows([a, b], 11, not_before=0, count=1) == [Window(100, 111)]


def test_later_windows_start_where_bookings_end() -> None:
    half = (Booking(0, 10, 2, 1.0), Booking(0, 20, 1, 1.0), Booking(0, 30, 1, 1.0))
    assert earliest_windows([demand(bookings=half, cpus=2)], 5, not_before=0) == [
        Window(10, 15),
        Window(20, 25),
        Window(30, 35),
    ]


def test_a_not_after_too_early_gives_no_window() -> None:
    full = (Booking(0, 100, 4, 1.0),)
    assert earliest_windows([demand(bookings=full)], 30, not_before=0, not_after=120) == []
    assert earliest_windows([demand(bookings=full)], 30, not_before=0, not_after=130) == [Window(100, 130)]


def test_a_demand_over_a_sites_capacity_is_refused_naming_the_site() -> None:
    with pytest.raises(UserInputError, match="site b has 4 CPUs and 8 GB in all"):
        earliest_windows([demand("a"), demand("b", cpus=5)], 30, not_before=0)
    with pytest.raises(UserInputError, match="site a"):
        earliest_windows([demand("a", memory_gb=9.0)], 30, not_before=0)


def test_no_demands_a_zero_duration_or_a_site_named_twice_are_refused() -> None:
    with pytest.raises(UserInputError):
        earliest_windows([], 30, not_before=0)
    with pytest.raises(UserInputError, match="longer than 0"):
        earliest_windows([demand()], 0, not_before=0)
    with pytest.raises(UserInputError, match="once per request"):
        earliest_windows([demand("a"), demand("a")], 30, not_before=0)


def test_free_steps_on_a_known_calendar_are_exact_and_merged() -> None:
    bookings = [Booking(10, 20, 2, 4.0), Booking(20, 30, 2, 4.0), Booking(15, 25, 1, 1.0)]
    assert free_steps(4, 8.0, bookings, 0, 50) == [
        Step(0, 10, 4, 8.0),
        Step(10, 15, 2, 4.0),
        Step(15, 25, 1, 3.0),  # [15, 20) and [20, 25) hold the same: one step
        Step(25, 30, 2, 4.0),
        Step(30, 50, 4, 8.0),
    ]
    assert free_steps(4, 8.0, bookings, 12, 18) == [Step(12, 15, 2, 4.0), Step(15, 18, 1, 3.0)]


def test_free_steps_clamp_an_overbooked_site_at_zero_and_are_empty_for_an_empty_interval() -> None:
    over = [Booking(0, 10, 3, 1.0), Booking(0, 10, 3, 1.0)]
    assert free_steps(4, 8.0, over, 0, 20) == [Step(0, 10, 0, 6.0), Step(10, 20, 4, 8.0)]
    assert free_steps(4, 8.0, over, 5, 5) == []


# -- properties against brute force ------------------------------------------------------------


RAW_BOOKINGS = st.lists(
    st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(1, 8), st.integers(1, 16)), max_size=8
)


@st.composite
def site_demands(draw: st.DrawFn, name: str) -> SiteDemand:
    """A site with an admissible random calendar and a demand that fits its capacity. Memory
    comes in multiples of 0.5 GB: exact in floats, so sums compare exactly."""
    cpus, memory = draw(st.integers(1, 8)), draw(st.integers(2, 16)) / 2
    held: list[Booking] = []
    for a, b, c, m in draw(RAW_BOOKINGS):
        if a == b:
            continue
        new = Booking(min(a, b), max(a, b), min(c, cpus), min(m / 2, memory))
        try:
            admit(name, cpus, memory, held, new)
        except CapacityError:
            continue
        held.append(new)
    want_cpus = draw(st.integers(1, 8).map(lambda c: min(c, cpus)))
    want_memory = draw(st.integers(1, 16).map(lambda m: min(m / 2, memory)))
    return SiteDemand(name, cpus, memory, tuple(held), want_cpus, want_memory)


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[SiteDemand], int, int, int | None, int]:
    sites = [draw(site_demands(f"s{i}")) for i in range(draw(st.integers(1, 3)))]
    duration = draw(st.integers(1, 30))
    not_before = draw(st.integers(0, 50))
    not_after = draw(st.none() | st.integers(0, 150))
    return sites, duration, not_before, not_after, draw(st.integers(1, 4))


def usage_at(bookings: tuple[Booking, ...], t: int) -> tuple[int, float]:
    held = [b for b in bookings if b.begin <= t < b.end]
    return sum(b.cpus for b in held), sum(b.memory_gb for b in held)


def brute_feasible_starts(
    demands: list[SiteDemand], duration: int, not_before: int, not_after: int | None
) -> list[int]:
    """Every integer start whose window fits, instant by instant (past the last booking's end
    every start fits, so the horizon is that end, or the last start not_after allows)."""
    last = max((b.end for d in demands for b in d.bookings), default=0)
    horizon = max(last, not_before) if not_after is None else not_after - duration
    ok = [
        all(
            (u := usage_at(d.bookings, x))[0] + d.cpus <= d.cpus_capacity
            and u[1] + d.memory_gb <= d.memory_capacity_gb
            for d in demands
        )
        for x in range(horizon + duration)
    ]
    return [t for t in range(not_before, horizon + 1) if all(ok[t : t + duration])]


@settings(max_examples=200, deadline=None)
@given(requests())
def test_the_first_window_is_the_earliest_feasible_start_and_all_windows_fit(
    req: tuple[list[SiteDemand], int, int, int | None, int],
) -> None:
    demands, duration, not_before, not_after, count = req
    windows = earliest_windows(demands, duration, not_before, not_after, count)
    feasible = brute_feasible_starts(demands, duration, not_before, not_after)
    assert len(windows) <= count
    assert (windows[0].begin if windows else None) == (feasible[0] if feasible else None)
    assert all(w.end - w.begin == duration and w.begin in feasible for w in windows)
    assert all(a.begin < b.begin for a, b in itertools.pairwise(windows))
    if windows:
        assert not [t for t in feasible if t < windows[0].begin]


@settings(max_examples=200, deadline=None)
@given(requests())
def test_the_windows_are_the_first_feasible_ones_among_not_before_and_booking_ends(
    req: tuple[list[SiteDemand], int, int, int | None, int],
) -> None:
    demands, duration, not_before, not_after, count = req
    feasible = set(brute_feasible_starts(demands, duration, not_before, not_after))
    candidates = {not_before} | {b.end for d in demands for b in d.bookings if b.end > not_before}
    expected = sorted(candidates & feasible)[:count]
    assert [w.begin for w in earliest_windows(demands, duration, not_before, not_after, count)] == expected


@settings(max_examples=200, deadline=None)
@given(site_demands("s"), st.integers(0, 110), st.integers(0, 110))
def test_free_steps_match_capacity_minus_brute_force_usage_at_every_instant(
    site: SiteDemand, begin: int, end: int
) -> None:
    steps = free_steps(site.cpus_capacity, site.memory_capacity_gb, site.bookings, begin, end)
    if begin >= end:
        assert steps == []
        return
    assert steps[0].begin == begin and steps[-1].end == end
    assert all(a.end == b.begin for a, b in itertools.pairwise(steps))
    assert all(
        (a.free_cpus, a.free_memory_gb) != (b.free_cpus, b.free_memory_gb)
        for a, b in itertools.pairwise(steps)
    )
    for x in range(begin, end):
        step = next(s for s in steps if s.begin <= x < s.end)
        cpus, memory = usage_at(site.bookings, x)
        assert step.free_cpus == max(0, site.cpus_capacity - cpus)
        assert step.free_memory_gb == max(0.0, site.memory_capacity_gb - memory)
