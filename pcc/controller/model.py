"""Reservations, allocations and the allocation state machine of DESIGN.md — enforced here
and only here: an illegal transition raises and is never written.

    requested -> scheduled -> booting -> running -> stopping -> stopped
                     |            |          |
                     +-> cancelled +-> failed +-> (end reached) stopping
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pcc.common.errors import PccError


class State(enum.StrEnum):
    REQUESTED = "requested"
    SCHEDULED = "scheduled"
    BOOTING = "booting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    FAILED = "failed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.SCHEDULED, State.CANCELLED, State.FAILED}),
    State.SCHEDULED: frozenset({State.BOOTING, State.CANCELLED, State.FAILED}),
    # A boot interrupted by a cancel or by the end of the reservation is torn down.
    State.BOOTING: frozenset({State.RUNNING, State.FAILED, State.STOPPING}),
    State.RUNNING: frozenset({State.STOPPING, State.FAILED}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED}),
    State.STOPPED: frozenset(),
    State.CANCELLED: frozenset(),
    State.FAILED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# How far along each state is (its place in the enum), for "the least advanced".
STATE_ORDER = {s: i for i, s in enumerate(State)}
# States whose allocations hold site capacity in the calendar.
HOLDING = frozenset({State.REQUESTED, State.SCHEDULED, State.BOOTING, State.RUNNING, State.STOPPING})


class IllegalTransition(PccError):
    """A state change the state machine does not allow (a bug, or a race to report)."""


def check_transition(current: State, target: State) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final state)"
        raise IllegalTransition(f"cannot go from {current} to {target} (allowed: {allowed})")


@dataclass(frozen=True)
class User:
    name: str
    email: str = ""
    ssh_key: str = ""
    admin: bool = False

    @property
    def role(self) -> str:
        return "admin" if self.admin else "user"


@dataclass(frozen=True)
class Allocation:
    reservation: str
    site: str
    cpus: int
    memory_gb: float
    ent: bool = False
    state: State = State.REQUESTED
    reason: str = ""
    frontend: str = ""
    public_ip: str = ""
    ssh_port: int | None = None
    nodes_up: int = 0
    nodes_total: int = 0
    id: int | None = None

    @property
    def login_command(self) -> str:
        """``ssh [-p PORT] root@HOST`` for the frontend ("" before it has an address)."""
        host, _, port = self.public_ip.partition(":")
        return f"ssh {'-p ' + port + ' ' if port else ''}root@{host}" if host else ""


@dataclass(frozen=True)
class Reservation:
    id: str
    owner: str
    title: str
    image: str
    begin: int  # epoch seconds, UTC
    end: int
    created: int
    ssh_key: str = ""
    cancelled: bool = False
    dag_cluster: int | None = None
    allocations: tuple[Allocation, ...] = field(default_factory=tuple)

    @property
    def state(self) -> State:
        """A reservation's overall state: its least advanced live allocation, else the first."""
        live = [a.state for a in self.allocations if a.state not in TERMINAL]
        if live:
            return min(live, key=STATE_ORDER.__getitem__)
        states = [a.state for a in self.allocations]
        for terminal in (State.FAILED, State.CANCELLED, State.STOPPED):
            if terminal in states:
                return terminal
        return State.REQUESTED


@dataclass(frozen=True)
class Event:
    time: float
    reservation: str
    site: str
    from_state: str
    to_state: str
    why: str


@dataclass(frozen=True)
class BookedLink:
    """A LibreBooking booking (by its reference number) and what PCC made of it: the
    reservation it became (None: not admitted, ``rejected`` says why), the fingerprint of the
    booking as last acted on, and the Status text last written back to it."""

    reference: str
    reservation: str | None = None
    fingerprint: str = ""
    status: str = ""
    rejected: str = ""
