"""`pcc reserve|list|show|cancel|extend|sites|images|users`: the reservation commands.
Each is one function returning an exit status; ``-o json`` picks the renderer."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pcc.errors import PccError, UserInputError
from pcc.model import Reservation, State
from pcc.service import Service, SiteRequest, parse_duration, parse_time
from pcc.settings import Settings
from pcc.store import Store


def _service(args: argparse.Namespace) -> Service:
    settings = Settings.from_env(args.state_dir, args.config)
    return Service(settings, Store(settings.database))


def _me(args: argparse.Namespace) -> str:
    return args.user or os.environ.get("PCC_USER") or getpass.getuser()


def _read_key(path: str | None) -> str:
    """The text of a --key FILE ("" when none was given)."""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text()
    except OSError as exc:
        raise UserInputError(f"--key {path}: {exc.strerror}") from None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _res_doc(res: Reservation) -> dict[str, Any]:
    return {
        "id": res.id,
        "owner": res.owner,
        "title": res.title,
        "image": res.image,
        "state": res.state.value,
        "begin": _iso(res.begin),
        "end": _iso(res.end),
        "cancelled": res.cancelled,
        "dag": res.dag_cluster,
        "allocations": [
            {
                "site": a.site,
                "cpus": a.cpus,
                "memory_gb": a.memory_gb,
                "state": a.state.value,
                "reason": a.reason,
                "frontend": a.frontend,
                "public_address": a.public_ip,
                "nodes_up": a.nodes_up,
                "nodes_total": a.nodes_total,
            }
            for a in res.allocations
        ],
    }


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
    key = _read_key(args.key)
    res = svc.reserve(
        _me(args),
        args.image,
        [SiteRequest.parse(s) for s in args.site],
        begin,
        end,
        title=args.title or "",
        ssh_key=key,
        now=now,
    )
    return _emit(
        out,
        args,
        _res_doc(res),
        lambda: (
            f"reservation {res.id} admitted: {res.image} at {', '.join(a.site for a in res.allocations)} "
            f"from {_iso(res.begin)} to {_iso(res.end)}\nwatch it: pcc show {res.id}   "
            f"(or: condor_q -constraint 'PccReservation == \"{res.id}\"' -af PccSite PccState PccNodesUp)"
        ),
    )


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    owner = None if args.all else _me(args)
    rows = [r for r in svc.store.reservations(owner) if not args.state or r.state.value == args.state]

    def text() -> str:
        lines = [f"{'ID':<8} {'OWNER':<10} {'IMAGE':<12} {'STATE':<10} {'BEGIN':<21} {'END':<21} SITES"]
        lines += [
            f"{r.id:<8} {r.owner:<10} {r.image:<12} {r.state.value:<10} {_iso(r.begin):<21} "
            f"{_iso(r.end):<21} {','.join(a.site + ':' + a.state.value for a in r.allocations)}"
            for r in rows
        ]
        return "\n".join(lines) if rows else "no reservations"

    return _emit(out, args, [_res_doc(r) for r in rows], text)


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    res = svc.store.reservation(args.id)
    events = svc.store.events(res.id)
    doc = {
        **_res_doc(res),
        "events": [
            {"time": _iso(e.time), "site": e.site, "from": e.from_state, "to": e.to_state, "why": e.why}
            for e in events
        ],
    }

    def text() -> str:
        lines = [
            f"reservation {res.id} ({res.title or 'untitled'}) by {res.owner}: "
            f"{res.image}, {res.state.value}",
            f"  {_iso(res.begin)} -> {_iso(res.end)}" + ("  [cancelled]" if res.cancelled else ""),
        ]
        for a in res.allocations:
            lines.append(
                f"  site {a.site}: {a.state.value}, {a.cpus} CPUs, {a.memory_gb:g} GB, nodes up "
                f"{a.nodes_up}/{a.nodes_total}" + (f" - {a.reason}" if a.reason else "")
            )
            if a.state is State.RUNNING and a.public_ip:
                host, _, port = a.public_ip.partition(":")
                lines.append(
                    f"    log in: ssh {'-p ' + port + ' ' if port else ''}root@{host}"
                    f"   (frontend {a.frontend})"
                )
        lines.append("  events:")
        lines += [
            f"    {_iso(e.time)} {e.site}: {e.from_state or '-'} -> {e.to_state}  ({e.why})" for e in events
        ]
        return "\n".join(lines)

    return _emit(out, args, doc, text)


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    res = _service(args).cancel(args.id, None if args.admin else _me(args))
    return _emit(
        out, args, _res_doc(res), lambda: f"reservation {res.id} cancelled; its clusters are torn down"
    )


def cmd_extend(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    res = svc.store.reservation(args.id)
    if (args.until is None) == (args.by is None):
        raise UserInputError("give exactly one of --until and --by")
    until = parse_time(args.until) if args.until else res.end + parse_duration(args.by)
    res = svc.extend(args.id, until, None if args.admin else _me(args))
    return _emit(out, args, _res_doc(res), lambda: f"reservation {res.id} now ends at {_iso(res.end)}")


def cmd_sites(args: argparse.Namespace, out: TextIO) -> int:
    svc = _service(args)
    rows = [
        {
            "name": s.name,
            "host": s.host,
            "port": s.port,
            "user": s.user,
            "cpus": s.cpus,
            "memory_gb": s.memory_gb,
            "deployment_type": s.deployment_type,
            "ent": s.ent,
        }
        for s in svc.settings.sites
    ]
    return _emit(
        out,
        args,
        rows,
        lambda: (
            "\n".join(
                f"{r['name']:<12} {r['user']}@{r['host']}:{r['port']:<6} {r['cpus']:>3} CPUs "
                f"{r['memory_gb']:>6g} GB  "
                f"{r['deployment_type']}"
                for r in rows
            )
            or "no sites configured"
        ),
    )


def cmd_images(args: argparse.Namespace, out: TextIO) -> int:
    from pcc.sitelink import run_pragma

    svc = _service(args)
    rows: list[dict[str, Any]] = []
    for site in svc.settings.sites:
        try:
            result = run_pragma(
                site,
                ["list", "repository"],
                timeout=svc.settings.timings.ssh_timeout_s,
                connect_timeout=svc.settings.timings.ssh_timeout_s,
            )
            for image in result.result or []:
                rows.append(
                    {"site": site.name, "name": image["name"], "description": image.get("description", "")}
                )
        except PccError as exc:
            rows.append({"site": site.name, "error": str(exc)})
    return _emit(
        out,
        args,
        rows,
        lambda: (
            "\n".join(
                f"{r['site']:<12} {r.get('name', '-'):<16} {r.get('description') or r.get('error', '')}"
                for r in rows
            )
            or "no sites configured"
        ),
    )


def cmd_users_add(args: argparse.Namespace, out: TextIO) -> int:
    key = _read_key(args.key)
    user = _service(args).add_user(args.name, args.email or "", key)
    return _emit(
        out,
        args,
        {"name": user.name, "email": user.email, "ssh_key": user.ssh_key},
        lambda: f"user {user.name} added",
    )


def cmd_users_list(args: argparse.Namespace, out: TextIO) -> int:
    users = _service(args).store.users()
    return _emit(
        out,
        args,
        [{"name": u.name, "email": u.email, "ssh_key": u.ssh_key} for u in users],
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
