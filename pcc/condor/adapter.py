"""PCC's one door to HTCondor: submit jobs and DAGs, query, edit, remove, read history.

Built on the ``htcondor2``/``classad2`` bindings. Every HTCondor failure leaves this
module as a :class:`~pcc.common.errors.CondorError` carrying the schedd's own message.

The bindings read their configuration per process, so one process talks to one pool:
:func:`use_pool` points the bindings at a pool's ``CONDOR_CONFIG`` (and, as root, at the
daemons' identity) before an adapter is made.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2
import htcondor2

from pcc.common.errors import CondorError

log = logging.getLogger(__name__)

JobSpec = int | str  # a cluster id, "cluster.proc", or a constraint expression


# HTCondor's JobStatus codes, named: the bindings' own IntEnum, so ``ad["JobStatus"] ==
# JobStatus.HELD`` holds for the plain integers that queries return, and an f-string of a
# member gives its number (``f"JobStatus == {JobStatus.HELD}"`` is ``JobStatus == 5``).
JobStatus = htcondor2.JobStatus


class Universe(enum.IntEnum):
    """HTCondor's ``JobUniverse`` codes that PCC uses, named. The bindings expose no universe
    enum (25.14.1 has JobStatus, JobAction, ... but nothing for universes); the numbers are
    HTCondor's (``condor_universe.h``) and are what a job ad's ``JobUniverse`` holds."""

    VANILLA = 5
    SCHEDULER = 7  # DAGMan itself runs here
    LOCAL = 12


# HTCondor's HoldReasonCode of a job submitted on hold (``hold = true``): every HOLD node and
# a BOOT node in the scheduler universe wait so, with no process, until the schedd's
# periodic_release; a hold with any other code is a real one.
SUBMITTED_ON_HOLD = 15


@dataclass(frozen=True)
class Submitted:
    """Result of a submit: the cluster id and how many procs it holds."""

    cluster: int
    count: int


def use_pool(condor_config: Path, condor_ids: str | None = None) -> None:
    """Point this process's bindings at a pool (process-wide, like HTCondor's own tools).

    ``condor_ids`` (``uid.gid``) lets root act as the unprivileged user the daemons run as.
    """
    os.environ["CONDOR_CONFIG"] = str(condor_config)
    if condor_ids:
        os.environ["CONDOR_IDS"] = condor_ids
    htcondor2.reload_config()
    # DAG submission runs condor_dagman's own setup: the pool's tools must be on PATH.
    bin_dir = htcondor2.param.get("BIN")
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if bin_dir and bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"


def to_expr(value: Any) -> str:
    """A Python value as ClassAd expression text (strings quoted, booleans lower case)."""
    if isinstance(value, classad2.ExprTree):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return classad2.quote(value)
    raise TypeError(f"cannot turn {type(value).__name__} into a ClassAd value")


def _plain(ad: classad2.ClassAd, projection: Iterable[str] | None) -> dict[str, Any]:
    keys = list(projection) if projection else list(ad.keys())
    out: dict[str, Any] = {}
    for key in keys:
        if key in ad:
            value = ad.eval(key) if isinstance(ad[key], classad2.ExprTree) else ad[key]
            if isinstance(value, classad2.Value):  # Undefined / Error
                value = None
            out[key] = value
    return out


class CondorAdapter:
    """Talks to one schedd. Methods return plain Python values, never binding objects."""

    def __init__(self, schedd: htcondor2.Schedd | None = None) -> None:
        self._given = schedd is not None
        try:
            self.schedd = schedd or htcondor2.Schedd()
        except htcondor2.HTCondorException as exc:
            raise CondorError(f"cannot locate the schedd: {exc}") from exc

    def _relocate(self) -> bool:
        """Find the local schedd again (a restarted pool listens on new ports); False when
        this adapter was given its schedd, or none answers."""
        if self._given:
            return False
        try:
            htcondor2.reload_config()
            self.schedd = htcondor2.Schedd()
        except htcondor2.HTCondorException:
            return False
        return True

    def _read(self, call: Callable[[], Any]) -> Any:
        """A read, tried again once at a relocated schedd if the first attempt fails."""
        try:
            return call()
        except htcondor2.HTCondorException:
            if not self._relocate():
                raise
            return call()

    # -- submit ----------------------------------------------------------------------------
    def submit(self, description: Mapping[str, str] | str, count: int = 1) -> Submitted:
        """Submit ``count`` procs of one job description (a dict of submit commands or text)."""
        try:
            sub = htcondor2.Submit(dict(description) if isinstance(description, Mapping) else description)
            result = self.schedd.submit(sub, count=count)
        except (htcondor2.HTCondorException, ValueError, TypeError) as exc:
            self._relocate()  # a restarted pool: the next call finds it (a write is never repeated)
            raise CondorError(f"submit failed: {exc}") from exc
        log.info("submitted cluster %d (%d procs)", result.cluster(), result.num_procs())
        return Submitted(result.cluster(), result.num_procs())

    def submit_dag(
        self,
        dag_file: Path,
        options: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Submitted:
        """Submit a DAG file through DAGMan (like ``condor_submit_dag -force``).

        ``options`` are ``condor_submit_dag``'s (e.g. ``{"batch-name": "r1"}``);
        ``attributes`` are custom attributes of the DAGMan job itself (``{"PccReservation":
        "r1"}``), set in its submit description, so the job carries them from its first ad.
        """
        opts = {"force": True, **(options or {})}
        try:
            sub = htcondor2.Submit.from_dag(str(dag_file), opts)
            for name, value in (attributes or {}).items():
                sub[f"My.{name}"] = to_expr(value)
            result = self.schedd.submit(sub)
        except (htcondor2.HTCondorException, ValueError, TypeError) as exc:
            self._relocate()  # a restarted pool: the next call finds it (a write is never repeated)
            raise CondorError(f"DAG submit of {dag_file} failed: {exc}") from exc
        log.info("submitted DAG %s as cluster %d", dag_file, result.cluster())
        return Submitted(result.cluster(), result.num_procs())

    # -- read ------------------------------------------------------------------------------
    def query(self, constraint: str = "true", projection: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Jobs in the queue matching ``constraint``, with only the projected attributes."""
        proj = list(projection)
        try:
            ads = self._read(lambda: self.schedd.query(constraint=constraint, projection=proj))
        except htcondor2.HTCondorException as exc:
            raise CondorError(f"queue query failed: {exc}") from exc
        return [_plain(ad, proj or None) for ad in ads]

    def history(
        self, constraint: str = "true", projection: Iterable[str] = (), limit: int = -1
    ) -> list[dict[str, Any]]:
        """Finished jobs matching ``constraint``, most recent first."""
        proj = list(projection)
        try:
            ads = self._read(lambda: self.schedd.history(constraint=constraint, projection=proj, match=limit))
        except htcondor2.HTCondorException as exc:
            raise CondorError(f"history query failed: {exc}") from exc
        return [_plain(ad, proj or None) for ad in ads]

    def collector_names(self, my_type: str) -> list[str]:
        """Names of the collector's ads of a custom ``MyType`` (e.g. PCC's site ads)."""
        try:
            ads = htcondor2.Collector().query(
                htcondor2.AdType.Any, constraint=f"MyType == {classad2.quote(my_type)}", projection=["Name"]
            )
        except htcondor2.HTCondorException as exc:
            raise CondorError(f"collector query failed: {exc}") from exc
        return [str(ad["Name"]) for ad in ads if "Name" in ad]

    def advertise(self, ads: Iterable[Mapping[str, Any]], invalidate: Iterable[str], my_type: str) -> None:
        """Publish generic ads (plain values) to the collector and invalidate the ads of
        ``my_type`` named in ``invalidate`` (e.g. sites no longer configured)."""
        try:
            collector = htcondor2.Collector()
            batch = [classad2.ClassAd(dict(ad)) for ad in ads]
            if batch:
                collector.advertise(batch, "UPDATE_AD_GENERIC")
            for name in invalidate:
                query = classad2.ClassAd(
                    {
                        "MyType": "Query",
                        "TargetType": my_type,
                        "Requirements": classad2.ExprTree(f"Name == {classad2.quote(name)}"),
                    }
                )
                collector.advertise([query], "INVALIDATE_ADS_GENERIC")
        except htcondor2.HTCondorException as exc:
            raise CondorError(f"advertising {my_type} ads failed: {exc}") from exc

    # -- change ----------------------------------------------------------------------------
    def edit(self, job: JobSpec, attr: str, value: Any, forward: bool = False) -> int:
        """Set ``attr`` on the matching jobs; with ``forward`` a running job's starter sees
        it too (``condor_qedit -forward``). Returns how many jobs were edited."""
        flags = htcondor2.TransactionFlag.SetDirty if forward else htcondor2.TransactionFlag.Default
        try:
            n = self.schedd.edit(job, attr, to_expr(value), flags=flags)
        except htcondor2.HTCondorException as exc:
            self._relocate()  # a restarted pool: the next call finds it (a write is never repeated)
            raise CondorError(f"edit of {attr} on {job} failed: {exc}") from exc
        return int(n)

    def remove(self, job: JobSpec, reason: str) -> int:
        """Remove the matching jobs (a DAG's FINAL node still runs). Returns how many."""
        try:
            result = self.schedd.act(htcondor2.JobAction.Remove, job, reason=reason)
        except htcondor2.HTCondorException as exc:
            self._relocate()  # a restarted pool: the next call finds it (a write is never repeated)
            raise CondorError(f"remove of {job} failed: {exc}") from exc
        return int(result.get("TotalSuccess", 0))

    def hold(self, job: JobSpec, reason: str) -> int:
        """Put the matching jobs on hold. Returns how many."""
        try:
            result = self.schedd.act(htcondor2.JobAction.Hold, job, reason=reason)
        except htcondor2.HTCondorException as exc:
            self._relocate()
            raise CondorError(f"hold of {job} failed: {exc}") from exc
        return int(result.get("TotalSuccess", 0))

    # -- convenience -----------------------------------------------------------------------
    def wait_for(
        self,
        constraint: str,
        predicate: Any,
        projection: Iterable[str],
        timeout: float,
        interval: float = 0.2,
        include_history: bool = False,
    ) -> dict[str, Any]:
        """Poll until a job matching ``constraint`` satisfies ``predicate``; returns its ad."""
        deadline = time.monotonic() + timeout
        proj = list(projection)
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = self.query(constraint, proj)
            if include_history and not last:
                last = self.history(constraint, proj, limit=1)
            for ad in last:
                if predicate(ad):
                    return ad
            time.sleep(interval)
        raise CondorError(f"timed out after {timeout:.0f} s waiting on {constraint}; last seen {last}")
