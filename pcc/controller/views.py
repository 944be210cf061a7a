"""The JSON documents PCC shows the world: what `pcc ... -o json` prints and what the REST
API returns, built in one place from the model. Times are ISO 8601 in UTC with a zone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pcc.common.timefmt import iso
from pcc.controller.accounts import TokenInfo
from pcc.controller.model import Allocation, Event, Reservation, State, User
from pcc.controller.service import SiteImages
from pcc.controller.settings import SiteEntry
from pcc.controller.slots import Step
from pcc.controller.store import SiteRecord


def allocation(a: Allocation) -> dict[str, Any]:
    return {
        "site": a.site,
        "cpus": a.cpus,
        "memory_gb": a.memory_gb,
        "ent": a.ent,
        "state": a.state.value,
        "reason": a.reason,
        "frontend": a.frontend,
        "public_address": a.public_ip,
        "nodes_up": a.nodes_up,
        "nodes_total": a.nodes_total,
        "login_command": a.login_command if a.state is State.RUNNING else "",
    }


def reservation(res: Reservation) -> dict[str, Any]:
    return {
        "id": res.id,
        "owner": res.owner,
        "title": res.title,
        "image": res.image,
        "begin": iso(res.begin),
        "end": iso(res.end),
        "state": res.state.value,
        "cancelled": res.cancelled,
        "allocations": [allocation(a) for a in res.allocations],
    }


def event(e: Event) -> dict[str, Any]:
    return {"time": iso(e.time), "site": e.site, "from": e.from_state, "to": e.to_state, "why": e.why}


def reservation_detail(res: Reservation, events: Sequence[Event]) -> dict[str, Any]:
    return {**reservation(res), "events": [event(e) for e in events]}


def user(u: User) -> dict[str, Any]:
    return {"name": u.name, "email": u.email, "ssh_key": u.ssh_key, "role": u.role}


def token(t: TokenInfo, now: float, secret: str | None = None) -> dict[str, Any]:
    """What may be shown of a token; ``secret`` (the token itself) only when just created."""
    doc: dict[str, Any] = {
        "id": t.id,
        "user": t.user,
        "label": t.label,
        "created": iso(t.created),
        "expires": _iso(t.expires),
        "last_used": _iso(t.last_used),
        "revoked": _iso(t.revoked),
        "valid": t.valid_at(now),
    }
    if secret is not None:
        doc["token"] = secret
    return doc


def site(record: SiteRecord) -> dict[str, Any]:
    s = record.entry
    return {
        "name": s.name,
        "host": s.host,
        "health": record.health,
        "reason": record.reason,
        "last_probe": _iso(record.last_probe),
        "capacity": {
            "cpus": s.cpus,
            "memory_gb": s.memory_gb,
            "reserved_cpus": record.reserved_cpus,
            "reserved_memory_gb": record.reserved_memory_gb,
        },
        "deployment_type": s.deployment_type,
        "ent": s.ent,
        "pragma_version": record.pragma_version,
        "images": list(record.images) if record.images is not None else None,
    }


def _iso(ts: float | None) -> str | None:
    return iso(ts) if ts else None


def images(catalogs: Sequence[SiteImages]) -> list[dict[str, Any]]:
    """One row per site and image; a site not probed yet is one row saying so."""
    rows: list[dict[str, Any]] = []
    for c in catalogs:
        if c.images is None:
            rows.append({"site": c.site, "error": "not probed yet"})
            continue
        updated = _iso(c.updated)
        rows.extend({"site": c.site, "name": name, "updated": updated} for name in c.images)
        if not c.images:
            rows.append({"site": c.site, "error": "no images"})
    return rows


def availability(site: SiteEntry, steps: Sequence[Step]) -> dict[str, Any]:
    """A site's free capacity over time: what the schedule's capacity strip draws."""
    return {
        "site": site.name,
        "cpus": site.cpus,
        "memory_gb": site.memory_gb,
        "steps": [
            {
                "begin": iso(s.begin),
                "end": iso(s.end),
                "free_cpus": s.free_cpus,
                "free_memory_gb": s.free_memory_gb,
            }
            for s in steps
        ],
    }
