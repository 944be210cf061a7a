"""The schedule grid's layout (pcc.web.schedule) and the reservation form's data
(pcc.web.forms): pure functions, checked without a browser or a store."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from starlette.datastructures import FormData

from pcc.common.errors import UserInputError
from pcc.controller.model import Allocation, Reservation, State
from pcc.controller.service import SiteImages, SiteRequest
from pcc.controller.settings import SiteEntry
from pcc.controller.slots import Step, Window
from pcc.controller.store import SiteRecord
from pcc.web import schedule
from pcc.web.forms import ReserveForm, SiteRow, image_choices, parse_window
from pcc.web.schedule import Span

DAY1 = date(2026, 12, 1)
T0 = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
H = 3600
D = 86_400


def test_the_day_view_has_24_hourly_columns_from_midnight_utc() -> None:
    view = schedule.make_view("day", DAY1)
    assert len(view.columns) == 24
    assert (view.begin, view.end) == (T0, T0 + D)
    assert view.columns[9].label == "09:00" and view.columns[9].title == "2026-12-01 09:00 UTC"
    assert (view.previous, view.next) == (date(2026, 11, 30), date(2026, 12, 2))


def test_the_week_and_two_week_views_have_7_and_14_daily_columns() -> None:
    week, two = schedule.make_view("week", DAY1), schedule.make_view("2weeks", DAY1)
    assert [len(week.columns), len(two.columns)] == [7, 14]
    assert week.columns[0].label == "Tue 01" and week.columns[0].title == "Tuesday 2026-12-01"
    assert (week.end - week.begin, two.end - two.begin) == (7 * D, 14 * D)
    assert (two.previous, two.next, two.last_day) == (
        date(2026, 11, 17),
        date(2026, 12, 15),
        date(2026, 12, 14),
    )


def test_an_unknown_view_or_date_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="unknown view 'month'"):
        schedule.make_view("month", DAY1)
    with pytest.raises(UserInputError, match="not a date"):
        schedule.parse_day("2026-13-01", DAY1)
    assert schedule.parse_day("", DAY1) == DAY1


def test_a_bar_covers_the_columns_its_reservation_touches() -> None:
    cols = schedule.make_view("day", DAY1).columns
    assert schedule.place(T0 + 9 * H, T0 + 11 * H, cols) == (9, 11)
    assert schedule.place(T0 + 9 * H + 1800, T0 + 9 * H + 2700, cols) == (9, 10)  # inside one hour
    assert schedule.place(T0 - D, T0 - H, cols) is None


def test_bars_are_clipped_to_the_view_and_say_they_go_on() -> None:
    cols = schedule.make_view("day", DAY1).columns
    (lane,) = schedule.lanes([(T0 - H, T0 + 2 * H, "x"), (T0 + 23 * H, T0 + D + H, "y")], cols)
    assert lane == [Span(0, 2, "x", before=True), Span(2, 21), Span(23, 1, "y", after=True)]


def test_each_lane_covers_every_column_once_and_overlaps_go_on_new_lanes() -> None:
    cols = schedule.make_view("day", DAY1).columns
    items = [(T0 + 1 * H, T0 + 5 * H, "a"), (T0 + 2 * H, T0 + 3 * H, "b"), (T0 + 5 * H, T0 + 6 * H, "c")]
    lanes = schedule.lanes(items, cols)
    assert [[s.item for s in lane if s.item] for lane in lanes] == [["a", "c"], ["b"]]
    for lane in lanes:
        assert sum(s.span for s in lane) == 24
        assert [s.start for s in lane] == [sum(x.span for x in lane[:i]) for i in range(len(lane))]


def test_two_short_bars_in_one_column_do_not_share_a_lane() -> None:
    cols = schedule.make_view("week", DAY1).columns
    lanes = schedule.lanes([(T0 + H, T0 + 2 * H, "a"), (T0 + 5 * H, T0 + 6 * H, "b")], cols)
    assert len(lanes) == 2


def test_a_site_without_reservations_gets_one_empty_lane() -> None:
    cols = schedule.make_view("week", DAY1).columns
    assert schedule.lanes([], cols) == [[Span(0, 7)]]


def test_the_strip_shows_the_fewest_free_cpus_in_each_column() -> None:
    cols = schedule.make_view("week", DAY1).columns
    steps = [
        Step(T0, T0 + D + H, 4, 2.0),
        Step(T0 + D + H, T0 + D + 2 * H, 1, 1.0),
        Step(T0 + D + 2 * H, T0 + 7 * D, 4, 2),
    ]
    assert schedule.strip(steps, cols) == [4, 1, 4, 4, 4, 4, 4]
    assert [schedule.level(f, 4) for f in (0, 1, 2, 3, 4)] == [0, 1, 2, 3, 4]
    assert schedule.level(1, 16) == 1  # a little free is never drawn as nothing


def reservation(rid: str, owner: str, site: str, state: State, begin: int, end: int) -> Reservation:
    alloc = Allocation(rid, site, 2, 1.0, state=state)
    return Reservation(rid, owner, f"title {rid}", "tiny", begin, end, begin, allocations=(alloc,))


def test_bars_at_a_site_mark_the_viewers_own_and_leave_out_cancelled_ones() -> None:
    rows = [
        reservation("r1", "alice", "a", State.RUNNING, T0, T0 + H),
        reservation("r2", "bob", "a", State.SCHEDULED, T0, T0 + H),
        reservation("r3", "alice", "a", State.CANCELLED, T0, T0 + H),
        reservation("r4", "alice", "b", State.RUNNING, T0, T0 + H),
    ]
    bars = [bar for _, _, bar in schedule.bars_at("a", rows, "alice")]
    assert [(b.reservation.id, b.yours, b.state, b.icon) for b in bars] == [
        ("r1", True, "running", "▶"),
        ("r2", False, "scheduled", "◷"),
    ]
    assert bars[0].when == "12-01 00:00–01:00Z"
    assert schedule.span_text(T0 + 23 * H, T0 + D + H) == "12-01 23:00 – 12-02 01:00Z"


def record(name: str, kind: str = "libvirt", ent: bool = False) -> SiteRecord:
    entry = SiteEntry(name, "127.0.0.2", 22, "pcc", Path("k"), Path("kh"), 4, 2.0, kind, ent)
    return SiteRecord(entry, "up")


def test_the_filter_keeps_sites_by_type_ent_and_free_cpus_ahead() -> None:
    cols = schedule.make_view("day", DAY1).columns
    now = T0 + 12 * H
    free = [4] * 12 + [1] * 12  # plenty free in the past, little ahead
    assert schedule.SiteFilter().keep(record("a"), free, cols, now)
    assert not schedule.SiteFilter(deployment_type="ec2").keep(record("a"), free, cols, now)
    assert not schedule.SiteFilter(ent=True).keep(record("a"), free, cols, now)
    assert schedule.SiteFilter(ent=True).keep(record("a", ent=True), free, cols, now)
    assert not schedule.SiteFilter(min_free=2).keep(record("a"), free, cols, now)
    assert schedule.SiteFilter(min_free=1).keep(record("a"), free, cols, now)


def test_filter_parameters_parse_and_refuse_garbage() -> None:
    assert schedule.parse_filter("ec2", "1", " 3 ") == schedule.SiteFilter("ec2", True, 3)
    assert schedule.parse_filter("", "", "") == schedule.SiteFilter()
    assert not schedule.SiteFilter().active
    with pytest.raises(UserInputError, match="whole number"):
        schedule.parse_filter("", "", "lots")


# -- the reservation form ----------------------------------------------------------------------
def form_data(**fields: str | list[str]) -> FormData:
    items: list[tuple[str, str]] = []
    for key, value in fields.items():
        items.extend((key, v) for v in (value if isinstance(value, list) else [value]))
    return FormData(items)


def test_a_posted_form_gives_one_request_per_site_row() -> None:
    form = ReserveForm.parse(
        form_data(site=["a", "b"], cpus=["2", "1"], memory_gb=["1", "0.5"], image="tiny", duration="2h")
    )
    assert form.rows == (SiteRow("a", "2", "1"), SiteRow("b", "1", "0.5"))
    assert form.requests() == [SiteRequest("a", 2, 1.0), SiteRequest("b", 1, 0.5)]


def test_bad_rows_name_the_row_in_their_error() -> None:
    with pytest.raises(UserInputError, match="site 2: choose a site"):
        ReserveForm(rows=(SiteRow("a"), SiteRow(""))).requests()
    with pytest.raises(UserInputError, match=r"site 1 \(a\): CPUs must be a whole number"):
        ReserveForm(rows=(SiteRow("a", "two"),)).requests()


def test_an_empty_begin_is_now_and_an_end_wins_over_a_duration() -> None:
    now = T0 + 100
    assert ReserveForm(duration="90m").times(now) == (now, now + 5400)
    assert ReserveForm(begin="2026-12-02T10:00", end="2026-12-02T12:00:30", duration="1h").times(now) == (
        T0 + D + 10 * H,
        T0 + D + 12 * H + 30,
    )
    with pytest.raises(UserInputError, match="give an end or a duration"):
        ReserveForm(duration="").times(now)


def test_buttons_add_and_remove_rows_and_taking_a_window_fills_begin_and_end() -> None:
    form = ReserveForm(rows=(SiteRow("a"),))
    two = form.add_row()
    assert len(two.rows) == 2 and two.focus == "site-2"
    assert two.remove_row(1).rows == (SiteRow(),) and form.remove_row(1) == form  # the last row stays
    taken = form.take(Window(T0 + 12 * H, T0 + 13 * H + 5))
    assert (taken.begin, taken.end, taken.duration) == ("2026-12-01T12:00:00", "2026-12-01T13:00:05", "")
    assert parse_window(f"{T0}-{T0 + H}") == Window(T0, T0 + H)
    with pytest.raises(UserInputError):
        parse_window("soon")


def test_images_offered_are_those_every_chosen_site_has() -> None:
    catalogs = [
        SiteImages("a", ("tiny", "centos7"), 1.0),
        SiteImages("b", ("tiny",), 1.0),
        SiteImages("c", None, None),
    ]
    assert image_choices(catalogs, ["a", "b"]) == ["tiny"]
    assert image_choices(catalogs, ["a"]) == ["centos7", "tiny"]
    assert image_choices(catalogs, []) == ["centos7", "tiny"]
    assert image_choices(catalogs, ["c"]) == []
