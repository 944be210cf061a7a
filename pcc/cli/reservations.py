"""`pcc reserve|list|show|cancel|extend|sites|images|slots`: the reservation commands.

Each is one function returning an exit status. It builds the API's request document, asks
the backend (the local store, or a controller's API with ``--url``; see
:mod:`pcc.cli.backend`) and prints the answer: ``-o json`` the document itself, else the
text :mod:`pcc.cli.render` makes of it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pcc.cli import render
from pcc.cli.backend import Backend, open_backend
from pcc.common.errors import UserInputError
from pcc.common.timefmt import iso, parse_duration, parse_time
from pcc.controller.model import State


def backend(args: argparse.Namespace) -> Backend:
    return open_backend(args, acting=getattr(args, "user", None))


def read_key(path: str | None) -> str:
    """The text of a --key FILE ("" when none was given)."""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text()
    except OSError as exc:
        raise UserInputError(f"--key {path}: {exc.strerror}") from None


def parse_site(text: str) -> dict[str, Any]:
    """``NAME:CPUS[:MEM_GB]`` as the API's allocation document."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise UserInputError(f"--site {text!r}: expected NAME:CPUS[:MEM_GB]")
    try:
        cpus = int(parts[1])
        memory = float(parts[2]) if len(parts) == 3 else 1.0
    except ValueError:
        raise UserInputError(f"--site {text!r}: CPUS must be a whole number and MEM_GB a number") from None
    return {"site": parts[0], "cpus": cpus, "memory_gb": memory}


def cmd_reserve(args: argparse.Namespace, out: TextIO) -> int:
    now = time.time()
    begin = parse_time(args.begin, now)
    if (args.end is None) == (args.duration is None):
        raise UserInputError("give exactly one of --end and --duration")
    end = parse_time(args.end, now) if args.end else begin + parse_duration(args.duration)
    body: dict[str, Any] = {
        "image": args.image,
        "begin": iso(begin),
        "end": iso(end),
        "title": args.title or "",
        "allocations": [parse_site(s) for s in args.site],
    }
    if key := read_key(args.key):
        body["ssh_key"] = key
    if args.user:
        body["owner"] = args.user
    res = backend(args).reserve(body)
    return render.emit(out, args, res, lambda: render.reserved(res))


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    rows = backend(args).reservations(args.state, mine=not args.all)
    return render.emit(out, args, rows, lambda: render.reservations(rows))


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    api = backend(args)
    res = api.reservation(args.id)
    detail = {**res, "events": api.events(res["id"])}
    return render.emit(out, args, detail, lambda: render.reservation_detail(detail))


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    res = backend(args).cancel(args.id)
    return render.emit(out, args, res, lambda: render.cancelled(res))


def cmd_extend(args: argparse.Namespace, out: TextIO) -> int:
    if (args.until is None) == (args.by is None):
        raise UserInputError("give exactly one of --until and --by")
    api = backend(args)
    if args.until:
        until = parse_time(args.until)
    else:
        until = parse_time(api.reservation(args.id)["end"]) + parse_duration(args.by)
    res = api.extend(args.id, until)
    return render.emit(out, args, res, lambda: render.extended(res))


def cmd_sites(args: argparse.Namespace, out: TextIO) -> int:
    rows = backend(args).sites()
    return render.emit(out, args, rows, lambda: render.sites(rows))


def cmd_images(args: argparse.Namespace, out: TextIO) -> int:
    rows = backend(args).images()
    return render.emit(out, args, rows, lambda: render.images(rows))


def cmd_slots(args: argparse.Namespace, out: TextIO) -> int:
    now = time.time()
    body = {
        "sites": [parse_site(s) for s in args.site],
        "duration": parse_duration(args.duration),
        "not_before": iso(parse_time(args.not_before, now)) if args.not_before else None,
        "not_after": iso(parse_time(args.not_after, now)) if args.not_after else None,
        "count": args.count,
    }
    doc = backend(args).slots(body)
    return render.emit(out, args, doc, lambda: render.slots(doc))


Handler = Callable[[argparse.Namespace, TextIO], int]


def command(sub: Any, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
    """A subcommand with ``-o text|json``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    p.set_defaults(handler=handler)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return p


def add_commands(sub: Any) -> None:
    def parser(name: str, handler: Handler, text: str, user: bool = True) -> argparse.ArgumentParser:
        p = command(sub, name, handler, text)
        if user:
            p.add_argument(
                "--user",
                help="act as this user (default: $PCC_USER or your login; with --url: your "
                "token's user, and an admin's token may name another)",
            )
        return p

    p = parser("reserve", cmd_reserve, "reserve a virtual cluster at one or more sites")
    p.add_argument("--site", action="append", required=True, metavar="NAME:CPUS[:MEM_GB]")
    p.add_argument("--image", required=True)
    p.add_argument("--begin", required=True, help="ISO 8601 (UTC if no zone), now, or now+15m")
    p.add_argument("--end")
    p.add_argument("--duration", help="e.g. 2h, 1d, 90m")
    p.add_argument("--title")
    p.add_argument("--key", help="SSH public key file (default: the user's key)")
    p = parser("list", cmd_list, "list reservations (yours unless --all)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--mine", action="store_true", help="only yours (the default)")
    p.add_argument("--state", choices=[s.value for s in State])
    p = parser("show", cmd_show, "one reservation: allocations, events, how to log in")
    p.add_argument("id")
    p = parser("cancel", cmd_cancel, "cancel a reservation (a running cluster is torn down)")
    p.add_argument("id")
    p.add_argument("--admin", action="store_true", help="act on anyone's reservation")
    p = parser("extend", cmd_extend, "move a reservation's end later (admission is checked again)")
    p.add_argument("id")
    p.add_argument("--until", help="the new end: ISO 8601 or now+DURATION")
    p.add_argument("--by", help="how much later than the current end, e.g. 2h")
    p.add_argument("--admin", action="store_true", help="act on anyone's reservation")
    parser("sites", cmd_sites, "configured sites")
    parser("images", cmd_images, "images in the sites' repositories")
    p = parser(
        "slots", cmd_slots, "the earliest windows in which a request fits at every site at once", False
    )
    p.add_argument("--site", action="append", required=True, metavar="NAME:CPUS[:MEM_GB]")
    p.add_argument("--duration", required=True, help="e.g. 2h, 1d, 90m")
    p.add_argument("--not-before", metavar="TIME", help="ISO 8601 or now+DURATION (default: now)")
    p.add_argument("--not-after", metavar="TIME", help="the windows end by then")
    p.add_argument("--count", type=int, default=3, help="how many windows (1 to 20; default 3)")
