"""The state machine, the store that enforces it, and admission over time."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcc.common.errors import CapacityError, UserInputError
from pcc.controller.admission import Booking, admit, peak_usage
from pcc.controller.model import (
    TRANSITIONS,
    Allocation,
    IllegalTransition,
    Reservation,
    State,
    User,
    check_transition,
)
from pcc.controller.store import Store


def test_the_happy_path_is_allowed_and_skipping_steps_is_not() -> None:
    path = [State.REQUESTED, State.SCHEDULED, State.BOOTING, State.RUNNING, State.STOPPING, State.STOPPED]
    for a, b in itertools.pairwise(path):
        check_transition(a, b)
    with pytest.raises(IllegalTransition, match="cannot go from requested to running"):
        check_transition(State.REQUESTED, State.RUNNING)
    for final in (State.STOPPED, State.CANCELLED, State.FAILED):
        assert TRANSITIONS[final] == frozenset()


def reservation(
    owner: str = "alice", begin: int = 1000, end: int = 2000, sites: tuple[str, ...] = ("a",)
) -> Reservation:
    return Reservation(
        id="",
        owner=owner,
        title="t",
        image="tiny",
        begin=begin,
        end=end,
        created=0,
        allocations=tuple(Allocation("", s, 2, 1.0) for s in sites),
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "pcc.db")


def test_reservations_get_sequential_ids_and_requested_allocations_with_an_event(store: Store) -> None:
    r1 = store.add_reservation(reservation(sites=("a", "b")))
    r2 = store.add_reservation(reservation())
    assert (r1.id, r2.id) == ("r00001", "r00002")
    assert [a.state for a in r1.allocations] == [State.REQUESTED, State.REQUESTED]
    assert [(e.site, e.from_state, e.to_state) for e in store.events(r1.id)] == [
        ("a", "", "requested"),
        ("b", "", "requested"),
    ]


def test_an_illegal_transition_raises_and_writes_nothing(store: Store) -> None:
    alloc = store.add_reservation(reservation()).allocations[0]
    assert alloc.id is not None
    with pytest.raises(IllegalTransition):
        store.transition(alloc.id, State.RUNNING, "skipping ahead")
    assert store.reservation(alloc.reservation).allocations[0].state is State.REQUESTED
    assert len(store.events(alloc.reservation)) == 1


def test_transitions_record_why_and_repeat_idempotently(store: Store) -> None:
    alloc = store.add_reservation(reservation()).allocations[0]
    assert alloc.id is not None
    assert store.transition(alloc.id, State.SCHEDULED, "DAG 7 submitted") is True
    assert store.transition(alloc.id, State.SCHEDULED, "again") is False
    events = store.events(alloc.reservation)
    assert (events[-1].from_state, events[-1].to_state, events[-1].why) == (
        "requested",
        "scheduled",
        "DAG 7 submitted",
    )
    assert len(events) == 2


def test_users_are_unique(store: Store) -> None:
    store.add_user(User("alice", "a@lab", "ssh-ed25519 AAAA"))
    with pytest.raises(UserInputError, match="already exists"):
        store.add_user(User("alice"))
    assert store.users() == [User("alice", "a@lab", "ssh-ed25519 AAAA")]


def test_overall_state_is_the_least_advanced_live_allocation(store: Store) -> None:
    res = store.add_reservation(reservation(sites=("a", "b")))
    a, b = res.allocations
    assert a.id is not None and b.id is not None
    store.transition(a.id, State.SCHEDULED, "x")
    assert store.reservation(res.id).state is State.REQUESTED
    store.transition(b.id, State.SCHEDULED, "x")
    store.transition(b.id, State.BOOTING, "x")
    assert store.reservation(res.id).state is State.SCHEDULED


def test_admission_counts_all_overlaps_not_just_pairs() -> None:
    existing = [Booking(0, 100, 2, 1), Booking(50, 150, 2, 1)]
    admit("a", 6, 10, existing, Booking(60, 70, 2, 1))  # 6 at the peak: fits exactly
    with pytest.raises(CapacityError) as exc:
        admit("a", 5, 10, existing, Booking(60, 70, 2, 1))
    assert "site a is short of CPUs from" in str(exc.value) and "(1 short)" in str(exc.value)
    admit("a", 4, 10, existing, Booking(150, 200, 4, 1))  # back-to-back windows do not overlap


def test_memory_is_checked_too() -> None:
    with pytest.raises(CapacityError, match=r"short of memory .* \(0.5 GB short\)"):
        admit("a", 100, 2, [Booking(0, 10, 1, 1.5)], Booking(5, 20, 1, 1.0))


bookings = st.lists(
    st.tuples(st.integers(0, 200), st.integers(1, 100), st.integers(1, 4), st.integers(1, 4)).map(
        lambda t: Booking(t[0], t[0] + t[1], t[2], float(t[3]))
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(bookings, st.integers(1, 10), st.integers(1, 10))
def test_admitted_bookings_never_exceed_capacity_at_any_instant(
    requests: list[Booking], cpus: int, mem: int
) -> None:
    admitted: list[Booking] = []
    for req in requests:
        try:
            admit("s", cpus, mem, admitted, req)
        except CapacityError:
            continue
        admitted.append(req)
    for t in range(0, 301):
        in_use = [b for b in admitted if b.begin <= t < b.end]
        assert sum(b.cpus for b in in_use) <= cpus
        assert sum(b.memory_gb for b in in_use) <= mem


@settings(max_examples=200, deadline=None)
@given(bookings)
def test_peak_usage_matches_brute_force(requests: list[Booking]) -> None:
    level, t0, _ = peak_usage(requests, 0, 400, lambda b: b.cpus)
    brute = max((sum(b.cpus for b in requests if b.begin <= t < b.end) for t in range(400)), default=0)
    assert level == brute
    if requests and brute:
        assert sum(b.cpus for b in requests if b.begin <= t0 < b.end) == brute


def test_store_survives_reopening(tmp_path: Path) -> None:
    Store(tmp_path / "db").add_reservation(reservation(begin=int(time.time())))
    assert [r.id for r in Store(tmp_path / "db").reservations()] == ["r00001"]


def test_site_image_catalogs_are_kept_with_the_time_they_were_reported(store: Store) -> None:
    assert store.site_catalog("a") is None  # never reported
    before = time.time()
    store.set_site_images("a", ["tiny", "centos7"])
    images, updated = store.site_catalog("a") or ((), 0.0)
    assert images == ("centos7", "tiny") and before <= updated <= time.time()


def test_the_loop_walks_only_through_allowed_states() -> None:
    from pcc.controller.reconcile import shortest_path

    assert shortest_path(State.BOOTING, State.STOPPED) == [State.STOPPING, State.STOPPED]
    assert shortest_path(State.REQUESTED, State.RUNNING) == [State.SCHEDULED, State.BOOTING, State.RUNNING]
    assert shortest_path(State.RUNNING, State.BOOTING) == []


def test_live_reservations_are_those_not_finished_and_those_asked_for_each_once(store: Store) -> None:
    now = int(time.time())
    two_sites = Reservation(
        "",
        "alice",
        "",
        "tiny",
        now,
        now + 60,
        now,
        allocations=(Allocation("", "a", 1, 1.0), Allocation("", "b", 1, 1.0)),
    )
    live = store.add_reservation(two_sites)
    done = store.add_reservation(reservation(begin=now))
    alloc = done.allocations[0]
    assert alloc.id is not None
    store.transition(alloc.id, State.CANCELLED, "cancelled")
    assert [r.id for r in store.live_reservations()] == [live.id]
    assert [r.id for r in store.live_reservations([done.id, "r99999"])] == [live.id, done.id]
    assert [len(r.allocations) for r in store.live_reservations()] == [2]


def _sync_sites_repeatedly(path: str, start: float, stop: float) -> None:
    from pcc.controller.settings import SiteEntry

    sites = [SiteEntry(f"s{i}", "127.0.0.2", 22, "pcc", Path("k"), Path("kh"), 4, 8.0) for i in range(3)]
    store = Store(path)
    time.sleep(max(0.0, start - time.time()))
    while time.time() < stop:
        store.sync_sites(sites)
        store.record_health("s0", "up", "", time.time(), 0.1)


def test_two_processes_mirroring_the_sites_at_once_both_succeed(tmp_path: Path) -> None:
    """Each program mirrors the configured sites at start (two `pcc booked sync` at once
    did): the delete and the insert are one write transaction, so neither sees the other's
    half-done table."""
    import multiprocessing

    path = str(tmp_path / "pcc.db")
    Store(path)
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 3  # both workers loaded before either writes
    workers = [ctx.Process(target=_sync_sites_repeatedly, args=(path, start, start + 1.5)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sorted(r["name"] for r in Store(path).db["sites"].rows) == ["s0", "s1", "s2"]
