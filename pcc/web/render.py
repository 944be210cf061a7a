"""Rendering the pages: one Jinja2 environment (autoescaped), the security headers every page
carries, and the helpers templates use (times, state and health symbols)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from pcc import __version__
from pcc.common.timefmt import human
from pcc.web import assets
from pcc.web.schedule import HEALTH_ICONS, STATE_ICONS

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Nothing but this origin: no inline scripts or styles (htmx's indicator styles are turned
# off in its <meta> config), no frames, forms post only here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(ts: float | None) -> str:
    return human(ts) if ts else "never"


def datetime_local(ts: float | None) -> str:
    """A time as an ``<input type="datetime-local" step="1">`` value (UTC)."""
    return human(ts)[:19].replace(" ", "T") if ts else ""


def gb(value: float) -> str:
    return f"{value:g}"


env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(when=when, datetime_local=datetime_local, gb=gb)
env.globals.update(assets=assets, version=__version__, state_icons=STATE_ICONS, health_icons=HEALTH_ICONS)


def html(
    template: str, context: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    body = env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})
