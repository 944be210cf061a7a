"""The reservation form as data: what the user typed (kept as text, so a re-rendered form
shows it back unchanged), the requests and times it means, and its button actions (add or
remove a site row, take a suggested window) -- pure, so it works the same with and without
JavaScript."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from pcc.common.errors import UserInputError
from pcc.common.timefmt import parse_duration, parse_time
from pcc.controller.service import SiteImages, SiteRequest
from pcc.controller.slots import Window
from pcc.web.render import datetime_local

MAX_ROWS = 20
DEFAULT_DURATION = "1h"


@dataclass(frozen=True)
class SiteRow:
    site: str = ""
    cpus: str = "1"
    memory_gb: str = "1"


@dataclass(frozen=True)
class ReserveForm:
    rows: tuple[SiteRow, ...] = (SiteRow(),)
    image: str = ""
    begin: str = ""  # "" = now
    end: str = ""
    duration: str = DEFAULT_DURATION  # used when no end is given
    title: str = ""
    ssh_key: str = ""
    focus: str = field(default="", compare=False)  # the id to focus after a re-render

    @classmethod
    def parse(cls, get: object) -> ReserveForm:
        """From a form's fields: ``site``, ``cpus``, ``memory_gb`` once per row, then
        ``image``, ``begin``, ``end``, ``duration``, ``title`` and ``ssh_key``. ``get`` is a
        Starlette FormData (anything with ``get`` and ``getlist``)."""

        def one(name: str, default: str = "") -> str:
            return str(get.get(name, default) or default).strip()  # type: ignore[attr-defined]

        def many(name: str) -> list[str]:
            return [str(v).strip() for v in get.getlist(name)]  # type: ignore[attr-defined]

        sites, cpus, memory = many("site"), many("cpus"), many("memory_gb")
        count = max(len(sites), len(cpus), len(memory))
        if count > MAX_ROWS:
            raise UserInputError(f"at most {MAX_ROWS} sites per reservation")

        def at(values: list[str], i: int) -> str:
            return values[i] if i < len(values) else ""

        rows = tuple(SiteRow(at(sites, i), at(cpus, i), at(memory, i)) for i in range(count))
        return cls(
            rows=rows or (SiteRow(),),
            image=one("image"),
            begin=one("begin"),
            end=one("end"),
            duration=one("duration"),
            title=str(get.get("title", "") or "").strip(),  # type: ignore[attr-defined]
            ssh_key=str(get.get("ssh_key", "") or "").strip(),  # type: ignore[attr-defined]
        )

    # -- what it means ----------------------------------------------------------------------
    def requests(self) -> list[SiteRequest]:
        out = []
        for n, row in enumerate(self.rows, 1):
            if not row.site:
                raise UserInputError(f"site {n}: choose a site")
            try:
                cpus = int(row.cpus)
                memory = float(row.memory_gb)
            except ValueError:
                raise UserInputError(
                    f"site {n} ({row.site}): CPUs must be a whole number and memory a number of GB"
                ) from None
            out.append(SiteRequest(row.site, cpus, memory))
        return out

    def times(self, now: float) -> tuple[int, int]:
        """Begin (empty: now) and end (the end given, else begin + duration)."""
        begin = parse_time(self.begin, now) if self.begin else int(now)
        if self.end:
            return begin, parse_time(self.end, now)
        if not self.duration:
            raise UserInputError("give an end or a duration")
        return begin, begin + parse_duration(self.duration)

    # -- its buttons ------------------------------------------------------------------------
    def add_row(self, site: str = "") -> ReserveForm:
        if len(self.rows) >= MAX_ROWS:
            raise UserInputError(f"at most {MAX_ROWS} sites per reservation")
        rows = (*self.rows, SiteRow(site))
        return dataclasses.replace(self, rows=rows, focus=f"site-{len(rows)}")

    def remove_row(self, index: int) -> ReserveForm:
        """Drop row ``index`` (from 1); the last row stays."""
        if len(self.rows) <= 1 or not 1 <= index <= len(self.rows):
            return self
        rows = self.rows[: index - 1] + self.rows[index:]
        return dataclasses.replace(self, rows=rows, focus=f"site-{min(index, len(rows))}")

    def take(self, window: Window) -> ReserveForm:
        return dataclasses.replace(
            self,
            begin=datetime_local(window.begin),
            end=datetime_local(window.end),
            duration="",
            focus="begin",
        )


def parse_window(text: str) -> Window:
    """A "take this window" button's value, ``BEGIN-END`` in epoch seconds."""
    begin, sep, end = text.partition("-")
    if not sep or not begin.isdigit() or not end.isdigit() or int(end) <= int(begin):
        raise UserInputError(f"not a window: {text!r}")
    return Window(int(begin), int(end))


def image_choices(catalogs: Sequence[SiteImages], chosen: Sequence[str]) -> list[str]:
    """The images every chosen site offers (no site chosen: any site's), sorted."""
    known = {c.site: set(c.images or ()) for c in catalogs}
    picked = [known.get(site, set()) for site in chosen if site]
    if picked:
        return sorted(set.intersection(*picked))
    return sorted(set().union(*known.values())) if known else []
