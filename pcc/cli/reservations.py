"""`pcc reserve|list|show|cancel|extend|sites|images|users`: the reservation commands.
Each is one function returning an exit status; ``-o json`` picks the renderer."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pcc.common.errors import UserInputError
from pcc.common.timefmt import human, parse_duration, parse_time
from pcc.controller import views
from pcc.controller.model import State
from pcc.controller.service import Actor, Service, SiteRequest
from pcc.controller.settings import Settings
from pcc.controller.store import Store


def _service(args: argparse.Namespace, create: bool = False) -> Service:
    """The service over this state directory's store; a store that does not exist is an
    error naming the directory and why it was chosen (unless ``create``)."""
    settings = Settings.from_env(args.state_dir, args.config)
    if not create and not settings.database.exists():
        raise UserInputError(
            f"no store at {settings.database}: {settings.where()}; run `pcc serve` (or `make run`) "
            "with this state directory first, or point at another with --state-dir or $PCC_STATE_DIR"
        )
    return Service(settings, Store(settings.database))


def _me(args: argparse.Namespace) -> str:
    return args.user or os.environ.get("PCC_USER") or getpass.getuser()


def _actor(args: argparse.Namespace, change: bool = False) -> Actor:
    """The operator's CLI owns the store: an admin. Changes to someone else's reservation
    still need ``--admin``, so that a typo in an id never cancels another user's cluster."""
    return Actor(_me(args), admin=not change or bool(getattr(args, "admin", False)))


def read_key(path: str | None) -> str:
    """The text of a --key FILE ("" when none was given)."""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text()
    except OSError as exc:
        raise UserInputError(f"--key {path}: {exc.strerror}") from None


def _emit(out: TextIO, args: argparse.Namespace, doc: Any, text: Callable[[], str]) -> int:
    if args.output == "json":
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        print(text(), file=out)
    return 0


def cmd_reserve(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    now = time.time()
    begin = parse_time(args.begin, now)
    if (args.end is None) == (args.duration is None):
        raise UserInputError("give exactly one of --end and --duration")
    end = parse_time(args.end, now) if args.end else begin + parse_duration(args.duration)
    res = svc.reserve(
        _actor(args),
        args.image,
        [SiteRequest.parse(s) for s in args.site],
        begin,
        end,
        title=args.title or "",
        ssh_key=read_key(args.key),
        now=now,
    )
    return _emit(
        out,
        args,
        views.reservation(res),
        lambda: (
            f"reservation {res.id} admitted: {res.image} at {', '.join(a.site for a in res.allocations)} "
            f"from {human(res.begin)} to {human(res.end)}\nwatch it: pcc show {res.id}   "
            f"(or: condor_q -constraint 'PccReservation == \"{res.id}\"' -af PccSite PccState PccNodesUp)"
        ),
    )


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    state = State(args.state) if args.state else None
    rows = _service(args).reservations(_actor(args), state=state, mine=not args.all)

    def text() -> str:
        lines = [f"{'ID':<8} {'OWNER':<10} {'IMAGE':<12} {'STATE':<10} {'BEGIN':<21} {'END':<21} SITES"]
        lines += [
            f"{r.id:<8} {r.owner:<10} {r.image:<12} {r.state.value:<10} {human(r.begin):<21} "
            f"{human(r.end):<21} {','.join(a.site + ':' + a.state.value for a in r.allocations)}"
            for r in rows
        ]
        return "\n".join(lines) if rows else "no reservations"

    return _emit(out, args, [views.reservation(r) for r in rows], text)


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    actor = _actor(args)
    res = svc.reservation(actor, args.id)
    events = svc.events(actor, res.id)

    def text() -> str:
        lines = [
            f"reservation {res.id} ({res.title or 'untitled'}) by {res.owner}: "
            f"{res.image}, {res.state.value}",
            f"  {human(res.begin)} -> {human(res.end)}" + ("  [cancelled]" if res.cancelled else ""),
        ]
        for a in res.allocations:
            lines.append(
                f"  site {a.site}: {a.state.value}, {a.cpus} CPUs, {a.memory_gb:g} GB, nodes up "
                f"{a.nodes_up}/{a.nodes_total}" + (f" - {a.reason}" if a.reason else "")
            )
            if a.state is State.RUNNING and a.login_command:
                lines.append(f"    log in: {a.login_command}   (frontend {a.frontend})")
        lines.append("  events:")
        lines += [
            f"    {human(e.time)} {e.site}: {e.from_state or '-'} -> {e.to_state}  ({e.why})" for e in events
        ]
        return "\n".join(lines)

    return _emit(out, args, views.reservation_detail(res, events), text)


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    res = _service(args).cancel(_actor(args, change=True), args.id)
    return _emit(
        out,
        args,
        views.reservation(res),
        lambda: f"reservation {res.id} cancelled; its clusters are torn down",
    )


def cmd_extend(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    actor = _actor(args, change=True)
    if (args.until is None) == (args.by is None):
        raise UserInputError("give exactly one of --until and --by")
    current = svc.reservation(actor, args.id)
    until = parse_time(args.until) if args.until else current.end + parse_duration(args.by)
    res = svc.extend(actor, args.id, until)
    return _emit(
        out, args, views.reservation(res), lambda: f"reservation {res.id} now ends at {human(res.end)}"
    )


def cmd_sites(args: argparse.Namespace, out: TextIO) -> int:
    records = _service(args).sites(_actor(args))
    rows = [views.site(r) for r in records]
    return _emit(
        out,
        args,
        rows,
        lambda: (
            "\n".join(
                f"{r['name']:<12} {r['host']:<16} {r['capacity']['cpus']:>3} CPUs "
                f"{r['capacity']['memory_gb']:>6g} GB  {r['health']:<9} {r['deployment_type']}"
                + (f"  ({r['reason']})" if r["reason"] else "")
                for r in rows
            )
            or "no sites configured"
        ),
    )


def cmd_images(args: argparse.Namespace, out: TextIO) -> int:
    rows = views.images(_service(args).images(_actor(args)))
    return _emit(
        out,
        args,
        rows,
        lambda: (
            "\n".join(f"{r['site']:<12} {r.get('name', '-'):<16} {r.get('error', '')}" for r in rows)
            or "no sites configured"
        ),
    )


def cmd_users_add(args: argparse.Namespace, out: TextIO) -> int:
    user = _service(args, create=True).add_user(_actor(args), args.name, args.email or "", read_key(args.key))
    return _emit(out, args, views.user(user), lambda: f"user {user.name} added")


def cmd_users_list(args: argparse.Namespace, out: TextIO) -> int:
    users = _service(args).users(_actor(args))
    return _emit(
        out,
        args,
        [views.user(u) for u in users],
        lambda: "\n".join(f"{u.name:<16} {u.email:<24} {u.ssh_key[:40]}" for u in users) or "no users",
    )


def add_commands(sub: Any) -> None:
    def parser(
        name: str, handler: Callable[..., int], text: str, target: Any = sub
    ) -> argparse.ArgumentParser:
        p = target.add_parser(name, help=text)
        p.set_defaults(handler=handler)
        p.add_argument("-o", "--output", choices=("text", "json"), default="text")
        p.add_argument("--user", help="act as this user (default: $PCC_USER or your login)")
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
    p = parser("extend", cmd_extend, "move a reservation's end (admission is checked again)")
    p.add_argument("id")
    p.add_argument("--until")
    p.add_argument("--by")
    p.add_argument("--admin", action="store_true")
    parser("sites", cmd_sites, "configured sites")
    parser("images", cmd_images, "images in the sites' repositories")
    users = sub.add_parser("users", help="users and their SSH keys")
    usub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = parser("add", cmd_users_add, "add a user", usub)
    p.add_argument("name")
    p.add_argument("--email")
    p.add_argument("--key", help="SSH public key file")
    parser("list", cmd_users_list, "list users", usub)
