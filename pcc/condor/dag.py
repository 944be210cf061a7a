"""One DAG per reservation: described from the reservation, rendered from the plain HTCondor
files in ``submit_templates/`` (pure: data in, text out), then written and submitted."""

from __future__ import annotations

import os
import pwd
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from pcc.common.errors import ConfigError
from pcc.common.templates import render
from pcc.common.timefmt import iso
from pcc.condor.adapter import CondorAdapter
from pcc.controller.admission import FRONTEND_CPUS
from pcc.controller.model import Reservation
from pcc.controller.settings import Settings

TEMPLATES = "pcc.submit_templates"
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


def render_dag(res: Reservation, settings: Settings, env: JobEnvironment, directory: Path) -> dict[str, str]:
    """The DAG and submit files of ``res``, by file name."""
    t = settings.timings
    boot_at = max(0, int(res.begin - t.boot_lead_s))
    common = {
        "reservation": res.id,
        "owner": res.owner,
        "image": res.image,
        "begin": res.begin,
        "end": res.end,
        "dir": directory,
        "pcc_job": env.pcc_job,
        "environment": env.render(),
    }
    allocations = "\n".join(
        render(
            TEMPLATES,
            "allocation.dag",
            site=a.site,
            cpus=a.cpus,
            compute_cpus=a.cpus - FRONTEND_CPUS,
            retries=t.boot_retries,
            dir=directory,
            limit=settings.site(a.site).limit_name,
        )
        for a in res.allocations
    )
    sites = ",".join(a.site for a in res.allocations)
    return {
        "reservation.dag": render(
            TEMPLATES,
            "reservation.dag",
            allocations=allocations,
            begin_iso=iso(res.begin),
            end_iso=iso(res.end),
            **common,
        ),
        "boot.sub": render(
            TEMPLATES,
            "boot.sub",
            boot_at=boot_at,
            window=max(60, res.end - boot_at),
            attempts=t.boot_retries + 1,
            **common,
        ),
        "watch.sub": render(TEMPLATES, "watch.sub", **common),
        "teardown.sub": render(TEMPLATES, "teardown.sub", sites=sites, **common),
        "key.pub": res.ssh_key.strip() + "\n",
    }


def write_dag(files: dict[str, str], directory: Path, owner: str | None) -> Path:
    """Write the files into ``directory``, owned by the pool's user (DAGMan writes there too)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    if owner and os.geteuid() == 0:
        user = pwd.getpwnam(owner)
        for path in [directory.parent, directory, *directory.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
    return directory / "reservation.dag"


def submit_reservation(
    condor: CondorAdapter, res: Reservation, settings: Settings, env: JobEnvironment, owner: str | None
) -> int:
    """Render, write and submit the DAG; returns the DAGMan job's cluster id."""
    directory = settings.dag_dir / res.id
    dag = write_dag(render_dag(res, settings, env, directory), directory, owner)
    submitted = condor.submit_dag(dag, {"batch-name": res.id})
    condor.edit(submitted.cluster, "PccReservation", res.id)
    return submitted.cluster
