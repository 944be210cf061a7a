"""The text `pcc` prints, rendered from the JSON documents of :mod:`pcc.controller.views`
(what the REST API returns too), so that the operator's local CLI and a laptop's client of
the API print the same lines. ``-o json`` prints the documents themselves."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from pcc.common.timefmt import human

Doc = Mapping[str, Any]


def emit(out: TextIO, args: argparse.Namespace, doc: Any, text: Callable[[], str]) -> int:
    """Print ``doc`` as JSON (``-o json``) or the text ``text()`` makes of it."""
    if args.output == "json":
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        print(text(), file=out)
    return 0


def when(value: str | None, none: str = "-") -> str:
    """An ISO 8601 time of a document as :func:`human` writes it (``none`` for null)."""
    if not value:
        return none
    return human(datetime.fromisoformat(value).timestamp())


def reserved(res: Doc) -> str:
    sites = ", ".join(a["site"] for a in res["allocations"])
    rid = res["id"]
    return (
        f"reservation {rid} admitted: {res['image']} at {sites} "
        f"from {when(res['begin'])} to {when(res['end'])}\nwatch it: pcc show {rid}   "
        f"(or: condor_q -constraint 'PccReservation == \"{rid}\"' -af PccSite PccState PccNodesUp)"
    )


def reservations(rows: Sequence[Doc]) -> str:
    if not rows:
        return "no reservations"
    lines = [f"{'ID':<8} {'OWNER':<10} {'IMAGE':<12} {'STATE':<10} {'BEGIN':<21} {'END':<21} SITES"]
    lines += [
        f"{r['id']:<8} {r['owner']:<10} {r['image']:<12} {r['state']:<10} {when(r['begin']):<21} "
        f"{when(r['end']):<21} {','.join(a['site'] + ':' + a['state'] for a in r['allocations'])}"
        for r in rows
    ]
    return "\n".join(lines)


def reservation_detail(res: Doc) -> str:
    """One reservation with its events (:func:`pcc.controller.views.reservation_detail`)."""
    lines = [
        f"reservation {res['id']} ({res['title'] or 'untitled'}) by {res['owner']}: "
        f"{res['image']}, {res['state']}",
        f"  {when(res['begin'])} -> {when(res['end'])}" + ("  [cancelled]" if res["cancelled"] else ""),
    ]
    for a in res["allocations"]:
        lines.append(
            f"  site {a['site']}: {a['state']}, {a['cpus']} CPUs, {a['memory_gb']:g} GB, nodes up "
            f"{a['nodes_up']}/{a['nodes_total']}" + (f" - {a['reason']}" if a["reason"] else "")
        )
        if a["state"] == "running" and a["login_command"]:
            lines.append(f"    log in: {a['login_command']}   (frontend {a['frontend']})")
    lines.append("  events:")
    lines += [
        f"    {when(e['time'])} {e['site']}: {e['from'] or '-'} -> {e['to']}  ({e['why']})"
        for e in res["events"]
    ]
    return "\n".join(lines)


def cancelled(res: Doc) -> str:
    return f"reservation {res['id']} cancelled; its clusters are torn down"


def extended(res: Doc) -> str:
    return f"reservation {res['id']} now ends at {when(res['end'])}"


def sites(rows: Sequence[Doc]) -> str:
    return (
        "\n".join(
            f"{r['name']:<12} {r['host']:<16} {r['capacity']['cpus']:>3} CPUs "
            f"{r['capacity']['memory_gb']:>6g} GB  {r['health']:<9} {r['deployment_type']}"
            + (f"  ({r['reason']})" if r["reason"] else "")
            for r in rows
        )
        or "no sites configured"
    )


def images(rows: Sequence[Doc]) -> str:
    return (
        "\n".join(f"{r['site']:<12} {r.get('name') or '-':<16} {r.get('error') or ''}" for r in rows)
        or "no sites configured"
    )


def slots(doc: Doc) -> str:
    """The windows of a slot search (:class:`pcc.api.schemas.SlotsDoc`)."""
    windows = doc["windows"]
    if not windows:
        return "no window fits (try a later --not-after, fewer CPUs or less memory)"
    lines = [f"{'BEGIN':<21} END"]
    lines += [f"{when(w['begin']):<21} {when(w['end'])}" for w in windows]
    return "\n".join(lines)


def users(rows: Sequence[Doc]) -> str:
    if not rows:
        return "no users"
    lines = [f"{'NAME':<16} {'ROLE':<6} {'EMAIL':<24} KEY"]
    lines += [f"{u['name']:<16} {u['role']:<6} {u['email']:<24} {u['ssh_key'][:40]}".rstrip() for u in rows]
    return "\n".join(lines)


def token_state(t: Doc) -> str:
    if t["revoked"]:
        return "revoked"
    return "valid" if t["valid"] else "expired"


def tokens(rows: Sequence[Doc]) -> str:
    """API tokens as :func:`pcc.controller.views.token` shows them (never the tokens)."""
    if not rows:
        return "no tokens"
    head = f"{'ID':<5} {'USER':<12} {'LABEL':<20} {'CREATED':<21} {'EXPIRES':<21} {'LAST-USED':<21} STATE"
    lines = [head]
    lines += [
        f"{t['id']:<5} {t['user']:<12} {t['label'] or '-':<20} {when(t['created']):<21} "
        f"{when(t['expires'], 'never'):<21} {when(t['last_used'], 'never'):<21} {token_state(t)}"
        for t in rows
    ]
    return "\n".join(lines)


def new_token_note(t: Doc) -> str:
    """What `pcc tokens create` says on stderr (the token itself goes alone to stdout)."""
    expires = f"expires {when(t['expires'])}" if t["expires"] else "never expires"
    label = f" ({t['label']})" if t["label"] else ""
    return (
        f"pcc: token {t['id']} for {t['user']}{label}, {expires}. It is shown this once: keep it now "
        "(`pcc login --url URL` reads it and stores it in a file only you can read)"
    )


def user_added(u: Doc) -> str:
    return f"user {u['name']} added" + (" (admin)" if u["role"] == "admin" else "")
