"""Times as users write and read them: ISO 8601 (UTC unless a zone is given), ``now``,
``now+DURATION``; durations like ``90m``, ``2h``, ``1d12h`` or plain seconds."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

from pcc.common.errors import UserInputError

MAX_DURATION_S = 100 * 366 * 86_400
LATEST = datetime(3000, 1, 1, tzinfo=UTC).timestamp()  # times past this are typos, not plans
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")


def parse_time(text: str, now: float | None = None) -> int:
    """ISO 8601 (naive means UTC), ``now``, or ``now+DURATION``; epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return int(now)
    if text.startswith("now+"):
        return _bounded(int(now + parse_duration(text[4:])), text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserInputError(
            f"not a time: {text!r} (use ISO 8601 like 2026-12-01T09:00Z, or now+15m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _bounded(int(when.timestamp()), text)


def _bounded(ts: int, text: str) -> int:
    if not 0 <= ts < LATEST:
        raise UserInputError(f"not a time PCC keeps: {text!r} (between 1970 and 3000)")
    return ts


def parse_duration(text: str) -> int:
    """``90m``, ``2h``, ``1d12h``, ``30s`` or a whole number of seconds."""
    stripped = text.strip()
    if stripped.isdigit():
        if int(stripped) > MAX_DURATION_S:
            raise UserInputError(f"not a duration: {text!r} is more than 100 years")
        return int(stripped)
    match = _DURATION.match(stripped)
    if not stripped or not match or not any(match.groups()):
        raise UserInputError(f"not a duration: {text!r} (use e.g. 90m, 2h, 1d12h, 30s)")
    d, h, m, s = (int(g or 0) for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s  # plain integers: no overflow, however large
    if seconds > MAX_DURATION_S:
        raise UserInputError(f"not a duration: {text!r} is more than 100 years")
    return seconds


@functools.lru_cache(maxsize=65536)
def iso(ts: float) -> str:
    """ISO 8601 in UTC with its zone, to the second: ``2026-12-01T09:00:00Z`` (machine output).
    Remembered: every listing writes the same begins and ends again."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human(ts: float) -> str:
    """The same instant for people: ``2026-12-01 09:00:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
