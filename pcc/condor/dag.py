"""One DAG per reservation, described, then rendered, then written and submitted.

:func:`describe_dag` builds the reservation's DAG in memory (``htcondor2.dags``: a
``BOOT_<site>`` node then a ``HOLD_<site>`` node per allocation, and a ``FINAL`` node);
:func:`render_dag` turns a description into DAG file text and :func:`render_files` adds the
submit descriptions (plain HTCondor files in ``submit_templates/``). All three are pure:
data in, text out, no disk and no schedd. :func:`write_dag` and :func:`submit_reservation`
are the thin step after them.
"""

from __future__ import annotations

import os
import pwd
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from htcondor2 import dags
from htcondor2.dags.writer import DAGWriter

from pcc.common.errors import ConfigError
from pcc.common.jobstate import BOOT_PERMANENT_EXIT, PccState
from pcc.common.templates import render
from pcc.common.timefmt import iso
from pcc.condor.adapter import SUBMITTED_ON_HOLD, CondorAdapter, JobStatus
from pcc.controller.admission import FRONTEND_CPUS
from pcc.controller.model import Reservation
from pcc.controller.settings import Settings

TEMPLATES = "pcc.submit_templates"
DAG_FILE = "reservation.dag"
KEY_FILE = "key.pub"
# The reservation's end as a submit-file line (``My.PccEnd = <epoch>``), which hold.sub
# includes: rewritten on every extension, so a HOLD node DAGMan submits later (after a long
# boot) waits for the end as it is then. See :func:`end_file_text` and :func:`write_end`.
END_FILE = "end.sub"
# The PccState each submit description gives its job when it is queued (``My.PccState``):
# the templates say ``@{initial_state}`` and take it from here, so they speak the enum.
INITIAL_STATES: Mapping[str, PccState] = {
    "boot.sub": PccState.SCHEDULED,
    "hold.sub": PccState.BOOTED,
    "teardown.sub": PccState.STOPPING,
}
# A BOOT node exiting with this status is not retried: the site refused the boot for good.
BOOT_UNLESS_EXIT = BOOT_PERMANENT_EXIT
# FINAL's PRE script: DAGMan runs it (a fork of `test`, no job) with the DAG's status so far;
# it exits 1 when that is 0 (every node succeeded, so every HOLD node tore its site down),
# and ``PRE_SKIP FINAL 1`` then skips the node. Any other status (a failure, a removal, a
# cancel) runs the teardown of every site.
FINAL_PRE = dags.Script("/usr/bin/test", ["$DAG_STATUS", "-ne", "0"])
FINAL_PRE_SKIP = 1
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")


@dataclass(frozen=True)
class JobEnvironment:
    """What every PCC job needs to find the pool and the controller's configuration."""

    pcc_job: Path
    condor_config: Path
    pcc_config: Path
    state_dir: Path

    def render(self) -> str:
        pairs = {
            "CONDOR_CONFIG": self.condor_config,
            "PCC_CONFIG": self.pcc_config,
            "PCC_STATE_DIR": self.state_dir,
            "PYTHONUNBUFFERED": "1",
        }
        for key, value in pairs.items():
            if not _PLAIN_PATH.match(str(value)):
                raise ConfigError(f"{key}={value}: paths given to jobs must not contain spaces or quotes")
        return " ".join(f"{k}={v}" for k, v in pairs.items())


def default_pcc_job() -> Path:
    return Path(sys.executable).parent / "pcc-job"


# -- describe ----------------------------------------------------------------------------------
def describe_dag(res: Reservation, settings: Settings, directory: Path) -> dags.DAG:
    """The DAG of ``res`` whose files live in ``directory``: per allocation ``BOOT_<site>``
    (retried ``boot_retries`` times unless it exits :data:`~pcc.common.jobstate.BOOT_PERMANENT_EXIT`) as the
    parent of ``HOLD_<site>`` (no process until the schedd releases it at the end, then the
    teardown of its site; not retried: a failed or removed one leads to FINAL); the ``FINAL``
    node tears every site down when anything went wrong (the DAG failed or was removed), and
    its PRE script skips it when every node succeeded (each site is torn down already)."""
    dag = dags.DAG()
    for a in res.allocations:
        boot = dag.layer(
            name=f"BOOT_{a.site}",
            submit_description=directory / "boot.sub",
            vars=[
                {
                    "site": a.site,
                    "cpus": str(a.cpus),
                    "compute_cpus": str(a.cpus - FRONTEND_CPUS),
                }
            ],
            retries=settings.timings.boot_retries,
            retry_unless_exit=BOOT_UNLESS_EXIT,
        )
        boot.child_layer(
            name=f"HOLD_{a.site}",
            submit_description=directory / "hold.sub",
            vars=[{"site": a.site}],
        )
    dag.final(
        name="FINAL",
        submit_description=directory / "teardown.sub",
        pre=FINAL_PRE,
        pre_skip_exit_code=FINAL_PRE_SKIP,
    )
    return dag


# -- render ------------------------------------------------------------------------------------
class _NodeNames(dags.NodeNameFormatter):
    """Node names as the description gives them. Each layer of a reservation's DAG is one
    node, and the controller finds nodes by ``DAGNodeName == "BOOT_<site>"``; the default
    formatter would append ``:0``."""

    def generate(self, layer_name: str, node_index: int) -> str:
        if node_index != 0:
            raise ValueError(f"layer {layer_name} has more than one node")
        return layer_name

    def parse(self, node_name: str) -> tuple[str, int]:
        return node_name, 0


class _Writer(DAGWriter):
    """``htcondor2.dags``' writer (its lines come from small generators, no disk needed),
    except that a FINAL node described by a submit file path keeps that path: 25.14.1 writes
    ``FINAL <name> <name>.sub`` whatever the description says."""

    def yield_final_node_lines(self, n: dags.FinalNode) -> Iterator[str]:
        sub = n.submit_description
        path = sub.absolute().as_posix() if isinstance(sub, Path) else f"{n.name}.sub"
        yield f"FINAL {n.name} {path}"
        yield from self.yield_node_meta_lines(n, n.name)


def render_dag(dag: dags.DAG, comment: Iterable[str] = ()) -> str:
    """The DAG file text of a description, after ``comment`` lines (pure)."""
    lines = [*(f"# {line}".rstrip() for line in comment), *_Writer(dag, _NodeNames()).yield_dag_file_lines()]
    return "\n".join(lines) + "\n"


def _comment(res: Reservation) -> list[str]:
    return [
        f"PCC reservation {res.id}: {res.image} from {iso(res.begin)} to {iso(res.end)} (owner {res.owner}).",
        "Rendered by pcc.condor.dag from its description. Per allocation a BOOT_<site> node",
        "(`pragma boot` at the reserved time, retried by DAGMan unless the site refused for good)",
        "then a HOLD_<site> node (held, no process, released by the schedd at the end in end.sub,",
        "then tearing its site down); the FINAL node tears every site down when the DAG failed or",
        "was removed, and is skipped by its PRE script when every node succeeded.",
    ]


def render_submit_files(
    res: Reservation, settings: Settings, env: JobEnvironment, directory: Path
) -> dict[str, str]:
    """The submit descriptions the DAG's nodes use, by file name (pure)."""
    t = settings.timings
    boot_at = max(0, int(res.begin - t.boot_lead_s))
    common: dict[str, Any] = {
        "reservation": res.id,
        "owner": res.owner,
        "image": res.image,
        "begin": res.begin,
        "end": res.end,
        "dir": directory,
        "controller": settings.controller_id,
        "pcc_job": env.pcc_job,
        "environment": env.render(),
    }
    extra: dict[str, dict[str, Any]] = {
        "boot.sub": {
            "attempts": t.boot_retries + 1,
            "boot_universe": settings.boot_universe,
            "timing": boot_timing(settings.boot_universe, boot_at, max(60, res.end - boot_at)),
            "requirements": "",
        },
        "hold.sub": {},
        "teardown.sub": {"sites": ",".join(a.site for a in res.allocations)},
    }
    return {
        name: render(TEMPLATES, name, initial_state=INITIAL_STATES[name], **common, **extra[name])
        for name in INITIAL_STATES
    }


def boot_timing(universe: str, boot_at: int, window: int) -> str:
    """The lines of boot.sub that make its job wait for ``boot_at`` and give up ``window``
    seconds later (pure). The scheduler universe has no ``deferral_time``: the job is queued
    on hold and the schedd releases it at its time (as it releases the HOLD nodes at the
    end); one still waiting past the window is removed, which fails the node (its retries
    are removed the same way, then FINAL runs). The local and vanilla universes wait in
    their starter for the ``deferral_time`` and are held past the window."""
    if universe == "scheduler":
        return (
            "hold = true\n"
            f"My.PccBootAt = {boot_at}\n"
            f"My.PccBootBy = {boot_at + window}\n"
            f"periodic_release = (HoldReasonCode =?= {SUBMITTED_ON_HOLD}) && (time() >= PccBootAt)"
            " && (time() <= PccBootBy)\n"
            f"periodic_remove = (JobStatus == {JobStatus.HELD}) && (HoldReasonCode =?= {SUBMITTED_ON_HOLD})"
            " && (time() > PccBootBy)\n"
        )
    return (
        f"deferral_time = {boot_at}\n"
        f"deferral_window = {window}\n"
        "deferral_prep_time = 20\n"
        "My.ScheddInterval = 0\n"
        # Only a boot still idle: one that started in time and runs past the end is a boot.
        f"periodic_hold = (JobStatus == {JobStatus.IDLE}) && (time() > DeferralTime + DeferralWindow)\n"
        'periodic_hold_reason = strcat("the reservation ended before its boot could start ("'
        ', DeferralTime, ")")\n'
    )


def render_files(
    res: Reservation, settings: Settings, env: JobEnvironment, directory: Path
) -> dict[str, str]:
    """Every file of ``res``'s DAG directory, by name: the DAG, its submit descriptions and
    the user's key (a file, not a job argument: job ads are public). Pure."""
    dag = render_dag(describe_dag(res, settings, directory), _comment(res))
    return {
        DAG_FILE: dag,
        **render_submit_files(res, settings, env, directory),
        END_FILE: end_file_text(res.end),
        KEY_FILE: res.ssh_key.strip() + "\n",
    }


def end_file_text(end: int) -> str:
    """The submit-file line hold.sub includes for the reservation's end (pure)."""
    return f"My.PccEnd = {int(end)}\n"


def read_end(directory: Path) -> int | None:
    """The end the reservation's end file holds, or None if it has none readable."""
    try:
        text = (directory / END_FILE).read_text()
    except OSError:
        return None
    found = re.fullmatch(r"My\.PccEnd = (\d{1,12})\n", text)
    return int(found.group(1)) if found else None


def write_end(directory: Path, end: int) -> None:
    """Replace the end file at once (DAGMan never reads half of one)."""
    tmp = directory / f".{END_FILE}.{os.getpid()}"
    tmp.write_text(end_file_text(end))
    os.chmod(tmp, 0o644)
    os.replace(tmp, directory / END_FILE)


def dagman_attributes(res: Reservation, controller: str) -> dict[str, str]:
    """Custom attributes of the DAGMan job itself, set when it is submitted."""
    return {"PccReservation": res.id, "PccOwner": res.owner, "PccRole": "dag", "PccController": controller}


# -- write and submit --------------------------------------------------------------------------
def write_dag(files: Mapping[str, str], directory: Path, owner: str | None) -> Path:
    """Write the files into ``directory``, owned by the pool's user (DAGMan writes there too)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    if owner and os.geteuid() == 0:
        user = pwd.getpwnam(owner)
        for path in [directory.parent, directory, *directory.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
    return directory / DAG_FILE


def submit_reservation(
    condor: CondorAdapter, res: Reservation, settings: Settings, env: JobEnvironment, owner: str | None
) -> int:
    """Render, write and submit the DAG; returns the DAGMan job's cluster id. The DAGMan job
    carries its batch name, ``PccReservation`` and ``PccOwner`` from the submit on."""
    directory = settings.dag_dir / res.id
    dag = write_dag(render_files(res, settings, env, directory), directory, owner)
    submitted = condor.submit_dag(
        dag, {"batch-name": res.id}, attributes=dagman_attributes(res, settings.controller_id)
    )
    return submitted.cluster
