"""What a LibreBooking user reads in their booking's Status attribute: PCC's state of the
reservation it became, in words (pure)."""

from __future__ import annotations

from pcc.common.errors import CapacityError
from pcc.common.timefmt import human
from pcc.controller.model import Reservation, State

MAX_STATUS = 500  # LibreBooking keeps attribute values as text; a status stays readable

_WORDS = {
    State.REQUESTED: "Requested",
    State.SCHEDULED: "Scheduled",
    State.BOOTING: "Booting",
    State.RUNNING: "Running",
    State.STOPPING: "Stopping",
    State.STOPPED: "Stopped",
    State.CANCELLED: "Stopped",  # cancelled before it booted: nothing runs, nothing will
    State.FAILED: "Failed",
}


def status_text(res: Reservation) -> str:
    """``Requested``, ``Scheduled: boots at ...``, ``Booting``, ``Running: ssh ...``,
    ``Stopping``, ``Stopped``, ``Failed: reason`` (per site when there are several)."""
    state = res.state
    if state is State.SCHEDULED:
        return _cap(f"Scheduled: boots at {human(res.begin)}")
    if state is State.RUNNING:
        logins = [(a.site, a.login_command) for a in res.allocations if a.state is State.RUNNING]
        if len(logins) == 1:
            return _cap(f"Running: {logins[0][1] or 'no address yet'}")
        return _cap("Running: " + "; ".join(f"{site}: {cmd or 'no address yet'}" for site, cmd in logins))
    if state is State.BOOTING:
        up = sum(a.nodes_up for a in res.allocations)
        total = sum(a.nodes_total for a in res.allocations)
        return f"Booting ({up}/{total} nodes up)" if total else "Booting"
    if state is State.FAILED:
        reasons = [f"{a.site}: {a.reason}" if len(res.allocations) > 1 else a.reason for a in res.allocations]
        return _cap("Failed: " + "; ".join(r for r in reasons if r) if any(reasons) else "Failed")
    return _WORDS[state]


def rejected_text(reason: str) -> str:
    return _cap(f"Rejected: {reason}")


def rejection_reason(exc: Exception) -> str:
    """Why a booking is not a reservation, with the next window that fits when there is one."""
    reason = str(exc)
    window = getattr(exc, "details", {}).get("next_window") if isinstance(exc, CapacityError) else None
    if window is not None:
        reason += f"; the next window that fits: {human(window.begin)} to {human(window.end)}"
    return reason


def _cap(text: str) -> str:
    return text if len(text) <= MAX_STATUS else text[: MAX_STATUS - 3] + "..."
