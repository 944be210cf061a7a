"""Which notices a reservation's state calls for (pure: store in, notices out)."""

from __future__ import annotations

import time
from pathlib import Path

from pcc.controller.model import Allocation, Reservation, State
from pcc.controller.notify import due_notices
from pcc.controller.store import Store


def test_failed_and_stopped_reservations_call_for_their_notices(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    now = int(time.time())
    res = store.add_reservation(
        Reservation(
            "",
            "alice",
            "",
            "tiny",
            now + 3600,
            now + 7200,
            now,
            allocations=(Allocation("", "a", 2, 1.0), Allocation("", "b", 2, 1.0)),
        )
    )
    a, b = res.allocations
    assert a.id is not None and b.id is not None
    assert [(n.kind, n.site) for n in due_notices(store, 15, now)] == [("admitted", "")]
    store.transition(
        a.id, State.FAILED, "site a: cannot reach 10.0.0.1", reason="site a: cannot reach 10.0.0.1"
    )
    for state in (State.SCHEDULED, State.BOOTING, State.RUNNING, State.STOPPING, State.STOPPED):
        store.transition(b.id, state, "test")
    notices = {(n.kind, n.site): n for n in due_notices(store, 15, now)}
    assert set(notices) == {("admitted", ""), ("failed", "a"), ("stopped", "")}
    assert "cannot reach 10.0.0.1" in notices[("failed", "a")].body


def test_ending_soon_is_due_only_within_the_warning_window(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    now = int(time.time())
    res = store.add_reservation(
        Reservation(
            "", "alice", "", "tiny", now - 60, now + 1200, now, allocations=(Allocation("", "a", 2, 1.0),)
        )
    )
    alloc = res.allocations[0]
    assert alloc.id is not None
    for state in (State.SCHEDULED, State.BOOTING, State.RUNNING):
        store.transition(alloc.id, state, "test")
    assert "ending" not in {n.kind for n in due_notices(store, 15, now)}
    assert "ending" in {n.kind for n in due_notices(store, 15, now + 600)}


def test_notices_follow_the_events_from_a_cursor_that_a_failure_holds_back(tmp_path: Path) -> None:
    from pcc.controller.notify import CURSOR, Notifier
    from pcc.controller.settings import NotifyConfig, Settings

    store = Store(tmp_path / "db")
    now = int(time.time())
    res = store.add_reservation(
        Reservation(
            "", "alice", "", "tiny", now + 3600, now + 7200, now, allocations=(Allocation("", "a", 1, 1.0),)
        )
    )
    dead = NotifyConfig(webhook="http://127.0.0.1:9/hook", timeout_s=1.0)  # nothing listens there
    notifier = Notifier(Settings(state_dir=tmp_path, notify=dead), store)
    assert notifier.send_due() == [] and store.cursor(CURSOR) == 0  # kept for the retry
    alloc = res.allocations[0]
    assert alloc.id is not None
    store.transition(alloc.id, State.CANCELLED, "cancelled")  # no longer live
    assert [n.kind for n in due_notices(store, 15, now, after_event=store.last_event_id())] == []
    assert [n.kind for n in due_notices(store, 15, now, after_event=0)] == ["admitted"]
