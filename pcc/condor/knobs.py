"""The HTCondor settings without which reservations run late or stall, and a check of any pool.

:data:`KNOBS` is the table (name, HTCondor's default, what PCC needs, the value to set and
why) and :func:`findings` judges a pool's values against it: pure, data in, findings out.
:func:`read_values` reads the values from the daemons of the pool this process's bindings
point at (:func:`~pcc.condor.adapter.use_pool`), preferring each daemon's own view (that is
what runs the DAGs) over the local configuration files; :func:`warn_about_pool` is the one
call ``pcc serve`` makes at start and ``pcc condor check`` prints the same findings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import classad2

from pcc.controller.settings import BOOT_UNIVERSES

log = logging.getLogger(__name__)

# How many reservations one pool must run at once: each keeps one DAGMan (scheduler
# universe) for its whole length, its teardown jobs and the site monitors run in the
# scheduler universe too, and its boots in the local universe (or another one:
# `[condor] boot_universe`). The embedded pool's caps (`max_local_jobs` in
# condor_config/personal.conf) are this.
CAPACITY = 5000
# Vanilla boot jobs become matchable this long before their time (`deferral_prep_time` in
# submit_templates/boot.sub): a negotiator that matches less often starts them late.
BOOT_PREP_S = 20

Lookup = Callable[[str], str]  # a setting's effective text: the pool's value, else the default


@dataclass(frozen=True)
class Finding:
    """One setting of the pool that would make reservations late or stall."""

    name: str
    current: str | None  # the pool's value; None when unset (HTCondor's default applies)
    default: str
    value: str  # what to set instead
    why: str

    def text(self) -> str:
        # Daemons report HTCondor's defaults as values: either way, say it is the default.
        now = self.default if self.current is None else self.current
        now += " (default)" if now == self.default else ""
        return f"{self.name} = {now} — set {self.name} = {self.value}: {self.why}"


@dataclass(frozen=True)
class Knob:
    """A setting PCC depends on. ``ok`` and ``want`` get the effective values of the pool."""

    name: str
    default: str  # HTCondor's own default (25.14.1), used when the pool leaves it unset
    ok: Callable[[Lookup], bool]
    want: Callable[[Lookup], str]
    why: str
    daemon: str = "SCHEDD"  # whose configuration counts
    # The `[condor] boot_universe` values under which it matters (the others never use it).
    boot_universes: tuple[str, ...] = BOOT_UNIVERSES


class Unreadable(ValueError):
    """A value PCC cannot evaluate (an expression using what only the daemon knows)."""


def number(text: str) -> float:
    """A setting's numeric value; like HTCondor's ``param_integer`` it may be an expression."""
    try:
        return float(int(text.strip()))
    except ValueError:
        pass
    try:
        value = classad2.ExprTree(text).eval()
    except (ValueError, SyntaxError, TypeError, classad2.ClassAdException) as exc:
        raise Unreadable(f"not a number: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unreadable("does not evaluate to a number")
    return float(value)


def allows(text: str, attribute: str, running: int) -> bool:
    """Whether a START_*_UNIVERSE expression lets one more job start with ``running`` running
    (the schedd evaluates it in its own ad, where ``attribute`` counts the running jobs)."""
    try:
        expr = classad2.ExprTree(text)
    except (ValueError, SyntaxError, classad2.ClassAdException) as exc:
        raise Unreadable(f"not an expression: {exc}") from None
    ad = classad2.ClassAd(
        {
            "TotalLocalJobsRunning": 0,
            "TotalSchedulerJobsRunning": 0,
            "TotalLocalJobsIdle": 0,
            "TotalSchedulerJobsIdle": 0,
            attribute: running,
        }
    )
    value = expr.eval(ad)
    if not isinstance(value, bool):
        raise Unreadable(f"does not evaluate to true or false with {attribute} = {running}")
    return value


def _scheduler_cap_ok(get: Lookup) -> bool:
    cap = number(get("MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER"))
    # The schedd applies the cap only when it is positive and below MAX_JOBS_PER_OWNER; 0
    # switches the scheduler universe off (no DAG runs at all).
    return cap < 0 or cap >= CAPACITY or cap >= number(get("MAX_JOBS_PER_OWNER"))


def _stop_rate_ok(get: Lookup) -> bool:
    return number(get("JOB_STOP_COUNT")) >= _stop_count(get)


def _stop_count(get: Lookup) -> int:
    # The schedd stops JOB_STOP_COUNT jobs every max(JOB_STOP_DELAY, 1) seconds.
    return 100 * max(int(number(get("JOB_STOP_DELAY"))), 1)


def _const(value: str) -> Callable[[Lookup], str]:
    return lambda _get: value


KNOBS: tuple[Knob, ...] = (
    Knob(
        "PERIODIC_EXPR_INTERVAL",
        "60",
        lambda get: number(get("PERIODIC_EXPR_INTERVAL")) <= 5,
        _const("5"),
        "the schedd evaluates PCC's periodic_hold/periodic_release this often: reservation ends "
        "and missed boots are acted on up to this many seconds late",
    ),
    Knob(
        "SCHEDULER_UNIVERSE_COOL_DOWN_DURATION",
        "300",
        lambda get: number(get("SCHEDULER_UNIVERSE_COOL_DOWN_DURATION")) <= 5,
        _const("0"),
        "after a graceful pool restart every DAGMan waits this many seconds to run again: a "
        "reservation that ends meanwhile is torn down that late",
    ),
    Knob(
        "JOB_STOP_COUNT",
        "1",
        _stop_rate_ok,
        lambda get: str(_stop_count(get)),
        "the schedd stops this many jobs per second (per JOB_STOP_DELAY): at 1, a pool stop or "
        "cancelling many reservations takes a second per DAGMan",
    ),
    Knob(
        "MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER",
        "200",
        _scheduler_cap_ok,
        _const(str(CAPACITY)),
        "every reservation keeps its DAGMan running until its end: past this many per owner, "
        "new reservations' DAGs stay Idle and never boot",
    ),
    Knob(
        "START_SCHEDULER_UNIVERSE",
        "TotalSchedulerJobsRunning < 500",
        lambda get: allows(get("START_SCHEDULER_UNIVERSE"), "TotalSchedulerJobsRunning", CAPACITY - 1),
        _const(f"TotalSchedulerJobsRunning < {CAPACITY}"),
        "DAGMans (one per reservation), site monitors and teardowns run in the scheduler "
        "universe: past this cap new DAGs stay Idle and never boot",
    ),
    Knob(
        "START_LOCAL_UNIVERSE",
        "TotalLocalJobsRunning < 200",
        lambda get: allows(get("START_LOCAL_UNIVERSE"), "TotalLocalJobsRunning", CAPACITY - 1),
        _const(f"TotalLocalJobsRunning < {CAPACITY}"),
        "boot jobs run in the local universe (boot_universe, the default): past this cap a "
        "burst of boots waits, so clusters boot late",
        boot_universes=("local",),
    ),
    Knob(
        "MAX_JOBS_RUNNING",
        "10000",  # MIN({$(DETECTED_MEMORY), 10000}): 10000 on any host with 10 GB
        lambda get: number(get("MAX_JOBS_RUNNING")) >= 100,
        _const("10000"),
        "every vanilla boot job needs a shadow from shortly before its time: past this many "
        "running jobs, boots wait and clusters come up late",
        boot_universes=("vanilla",),
    ),
    Knob(
        "NEGOTIATOR_INTERVAL",
        "60",
        lambda get: number(get("NEGOTIATOR_INTERVAL")) <= BOOT_PREP_S - 5,
        _const("10"),
        f"boot jobs become matchable {BOOT_PREP_S} s before their time and are matched at the "
        f"negotiator's next cycle: a boot starts up to NEGOTIATOR_INTERVAL - {BOOT_PREP_S} s late",
        daemon="NEGOTIATOR",
        boot_universes=("vanilla",),
    ),
)
# Settings the checks read that PCC needs no particular value of (defaults as in HTCondor).
RELATED: Mapping[str, str] = {"MAX_JOBS_PER_OWNER": "100000", "JOB_STOP_DELAY": "0"}


def knobs_for(boot_universe: str) -> tuple[Knob, ...]:
    """The settings that matter to a controller whose boot jobs run in ``boot_universe``."""
    return tuple(k for k in KNOBS if boot_universe in k.boot_universes)


def defaults() -> dict[str, str]:
    return {**{k.name: k.default for k in KNOBS}, **RELATED}


def findings(values: Mapping[str, str | None], knobs: tuple[Knob, ...] = KNOBS) -> list[Finding]:
    """The settings of ``values`` (a pool's, names in any case; missing, None or empty =
    unset, so HTCondor's default) that would make reservations late or stall."""
    given = {k.upper(): v.strip() for k, v in values.items() if v is not None and v.strip()}
    fallback = defaults()

    def get(name: str) -> str:
        return given.get(name, fallback.get(name, ""))

    out: list[Finding] = []
    for knob in knobs:
        current = given.get(knob.name)
        try:
            if knob.ok(get):
                continue
            why = knob.why
        except Unreadable as exc:
            why = f"PCC cannot judge {get(knob.name)!r} ({exc}); {knob.why}"
        out.append(Finding(knob.name, current, knob.default, knob.want(get), why))
    return out


# -- reading a pool ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolValues:
    """The values of every setting the checks read, and where each daemon's came from."""

    values: dict[str, str | None]
    sources: dict[str, str] = field(default_factory=dict)  # daemon -> "the schedd at <...>" or why not


def _names(daemon: str) -> list[str]:
    names = [k.name for k in KNOBS if k.daemon == daemon]
    return names + list(RELATED) if daemon == "SCHEDD" else names


def _from_daemon(daemon: str, names: list[str]) -> tuple[dict[str, str | None], str]:
    """The daemon's own values (remote config query), or raises HTCondorException / LookupError."""
    import htcondor2

    location = htcondor2.Collector().locate(getattr(htcondor2.DaemonType, daemon.title()))
    if location is None:
        raise LookupError(f"no {daemon.lower()} found")
    remote = htcondor2.RemoteParam(location)
    keys = {key.upper(): key for key in remote}  # the daemon's names, in whatever case it has them
    out: dict[str, str | None] = {}
    for name in names:
        out[name] = str(remote[keys[name]]) if name in keys else None
    return out, f"the {daemon.lower()} at {location.get('MyAddress', '?')}"


def _from_config(names: list[str]) -> dict[str, str | None]:
    import htcondor2

    out: dict[str, str | None] = {}
    for name in names:
        try:
            value: Any = htcondor2.param[name]
        except KeyError:
            value = None
        out[name] = None if value is None else str(value)
    return out


def read_values() -> PoolValues:
    """Read the settings from the pool this process points at: each daemon's own values when
    it answers, else (it is down, or refuses to show its configuration) the local files'."""
    import htcondor2

    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for daemon in ("SCHEDD", "NEGOTIATOR"):
        names = _names(daemon)
        try:
            got, sources[daemon.lower()] = _from_daemon(daemon, names)
        except (htcondor2.HTCondorException, LookupError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            got = _from_config(names)
            sources[daemon.lower()] = (
                f"the configuration files (the {daemon.lower()} did not answer: {reason})"
            )
        values.update(got)
    return PoolValues(values, sources)


def warn_about_pool(where: str | None = None, knobs: tuple[Knob, ...] = KNOBS) -> list[Finding]:
    """Log one WARNING per setting of the current pool that would make reservations late or
    stall (``pcc serve`` calls this once at start). Never raises: a check is advice."""
    pool = f"pool {where or 'at CONDOR_CONFIG=' + os.environ.get('CONDOR_CONFIG', '?')}"
    try:
        found = findings(read_values().values, knobs)
    except Exception as exc:  # the pool's answer is advice; serve must start anyway
        log.warning("%s: could not check its settings (%s); `pcc condor check` tries again", pool, exc)
        return []
    for finding in found:
        log.warning("%s: %s (`pcc condor check` lists them all)", pool, finding.text())
    return found
