"""The schedule grid's layout, as pure functions: a view's time columns, reservations as bars
on lanes (each bar one ``<td colspan>``, so the grid stays a real table), the strip of free
CPUs under each site, and the site filter. The pages only fill these into templates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Generic, TypeVar

from pcc.common.errors import UserInputError
from pcc.controller.model import Allocation, Reservation, State
from pcc.controller.slots import Step
from pcc.controller.store import SiteRecord

T = TypeVar("T")

HOUR = 3600
DAY = 86_400
# name -> (number of columns, seconds per column, what the view is called)
VIEWS: dict[str, tuple[int, int, str]] = {
    "day": (24, HOUR, "Day"),
    "week": (7, DAY, "Week"),
    "2weeks": (14, DAY, "Two weeks"),
}
LEVELS = 4  # the free-CPU strip draws 0..LEVELS

# State and health shown as text beside a symbol (the symbol is aria-hidden; never colour alone).
STATE_ICONS: dict[str, str] = {
    State.REQUESTED: "○",
    State.SCHEDULED: "◷",
    State.BOOTING: "◐",
    State.RUNNING: "▶",
    State.STOPPING: "◑",
    State.STOPPED: "■",
    State.CANCELLED: "✗",
    State.FAILED: "⚠",
}
HEALTH_ICONS = {"up": "✓", "degraded": "⚠", "down": "✗", "unknown": "?"}


@dataclass(frozen=True)
class Column:
    begin: int  # epoch seconds, UTC; the column is [begin, end)
    end: int
    label: str  # what the header shows
    title: str  # the whole date and time, for the header's abbr


@dataclass(frozen=True)
class View:
    name: str
    first_day: date
    columns: tuple[Column, ...]

    @property
    def begin(self) -> int:
        return self.columns[0].begin

    @property
    def end(self) -> int:
        return self.columns[-1].end

    @property
    def title(self) -> str:
        return VIEWS[self.name][2]

    @property
    def days(self) -> int:
        return max(1, (self.end - self.begin) // DAY)

    @property
    def previous(self) -> date:
        return self.first_day - timedelta(days=self.days)

    @property
    def next(self) -> date:
        return self.first_day + timedelta(days=self.days)

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.days - 1)


def make_view(name: str, first_day: date) -> View:
    """The columns of view ``name`` (day: 24 hours; week: 7 days; 2weeks: 14 days) from
    00:00 UTC of ``first_day``."""
    if name not in VIEWS:
        raise UserInputError(f"unknown view {name!r} (views: {', '.join(VIEWS)})")
    count, width, _ = VIEWS[name]
    start = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp())
    columns = []
    for i in range(count):
        begin = start + i * width
        when = datetime.fromtimestamp(begin, UTC)
        if width == HOUR:
            label, title = when.strftime("%H:00"), when.strftime("%Y-%m-%d %H:00 UTC")
        else:
            label, title = when.strftime("%a %d"), when.strftime("%A %Y-%m-%d")
        columns.append(Column(begin, begin + width, label, title))
    return View(name, first_day, tuple(columns))


def parse_day(text: str, today: date) -> date:
    """A view's first day from ``YYYY-MM-DD`` ("" means today)."""
    if not text:
        return today
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserInputError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Span(Generic[T]):
    """A run of ``span`` columns from column ``start`` of one lane: a bar (``item``) or a gap
    (``item`` None). ``before``/``after``: the bar goes on beyond the view's edge."""

    start: int
    span: int
    item: T | None = None
    before: bool = False
    after: bool = False


def place(begin: int, end: int, columns: Sequence[Column]) -> tuple[int, int] | None:
    """The columns ``[first, last)`` that ``[begin, end)`` touches, or None if none."""
    touched = [i for i, c in enumerate(columns) if begin < c.end and c.begin < end]
    return (touched[0], touched[-1] + 1) if touched else None


def lanes(items: Sequence[tuple[int, int, T]], columns: Sequence[Column]) -> list[list[Span[T]]]:
    """Lay ``(begin, end, item)`` out on as few lanes as needed, no two bars of a lane
    sharing a column; each lane is a list of spans covering every column exactly once.
    Items outside the columns are left out; a site with nothing gets one empty lane."""
    placed = []
    for begin, end, item in items:
        found = place(begin, end, columns)
        if found is not None:
            placed.append((found[0], found[1], begin, end, item))
    placed.sort(key=lambda p: (p[0], -(p[1] - p[0]), p[2]))
    rows: list[list[tuple[int, int, int, int, T]]] = []
    for p in placed:
        row = next((r for r in rows if r[-1][1] <= p[0]), None)
        if row is None:
            rows.append([p])
        else:
            row.append(p)
    width = len(columns)
    out: list[list[Span[T]]] = []
    for row in rows or [[]]:
        spans: list[Span[T]] = []
        at = 0
        for first, last, begin, end, item in row:
            if first > at:
                spans.append(Span(at, first - at))
            spans.append(Span(first, last - first, item, begin < columns[0].begin, end > columns[-1].end))
            at = last
        if at < width:
            spans.append(Span(at, width - at))
        out.append(spans)
    return out


def strip(steps: Sequence[Step], columns: Sequence[Column]) -> list[int]:
    """The fewest free CPUs in each column (from a site's availability steps over the view)."""
    out = []
    for c in columns:
        values = [s.free_cpus for s in steps if s.begin < c.end and c.begin < s.end]
        out.append(min(values) if values else 0)
    return out


def level(free: int, capacity: int) -> int:
    """How full a strip cell's bar is drawn: 0 (none free) .. LEVELS (all free)."""
    if capacity <= 0 or free <= 0:
        return 0
    return max(1, min(LEVELS, round(LEVELS * free / capacity)))


@dataclass(frozen=True)
class Bar:
    """One reservation's allocation at one site, as the grid shows it."""

    reservation: Reservation
    allocation: Allocation
    yours: bool

    @property
    def state(self) -> str:
        return self.allocation.state.value

    @property
    def icon(self) -> str:
        return STATE_ICONS[self.allocation.state]

    @property
    def when(self) -> str:
        return span_text(self.reservation.begin, self.reservation.end)


def bars_at(site: str, reservations: Sequence[Reservation], viewer: str) -> list[tuple[int, int, Bar]]:
    """The bars of ``site``: each reservation's allocation there, except cancelled ones
    (which never held the site)."""
    out = []
    for r in reservations:
        for a in r.allocations:
            if a.site == site and a.state is not State.CANCELLED:
                out.append((r.begin, r.end, Bar(r, a, r.owner == viewer)))
    return out


def span_text(begin: int, end: int) -> str:
    """``12-01 09:00–11:00Z`` within a day, else ``12-01 09:00 – 12-03 10:00Z``."""
    b, e = datetime.fromtimestamp(begin, UTC), datetime.fromtimestamp(end, UTC)
    if b.date() == e.date():
        return f"{b:%m-%d %H:%M}–{e:%H:%M}Z"
    return f"{b:%m-%d %H:%M} – {e:%m-%d %H:%M}Z"


@dataclass(frozen=True)
class SiteFilter:
    """Which sites the grid shows: a deployment type (""=any), ENT only, and at least
    ``min_free`` CPUs free at some time of the view from now on (None: any)."""

    deployment_type: str = ""
    ent: bool = False
    min_free: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.deployment_type or self.ent or self.min_free is not None)

    def keep(self, record: SiteRecord, free: Sequence[int], columns: Sequence[Column], now: float) -> bool:
        entry = record.entry
        if self.deployment_type and entry.deployment_type != self.deployment_type:
            return False
        if self.ent and not entry.ent:
            return False
        if self.min_free is not None:
            ahead = [f for f, c in zip(free, columns, strict=True) if c.end > now] or list(free)
            if max(ahead, default=0) < self.min_free:
                return False
        return True


def parse_filter(deployment_type: str, ent: str, min_free: str) -> SiteFilter:
    text = min_free.strip()
    if text and not text.isdigit():
        raise UserInputError(f"free CPUs must be a whole number, got {min_free!r}")
    return SiteFilter(deployment_type.strip(), ent not in ("", "0", "off"), int(text) if text else None)
