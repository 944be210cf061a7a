"""`pcc serve`: the long-running controller. For now it owns the embedded pool's lifetime and
runs the reconcile loop's skeleton, which reports the pool's state every few seconds."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from pcc.condor.adapter import CondorAdapter, JobStatus, use_pool
from pcc.condor.pool import PersonalPool
from pcc.errors import PccError
from pcc.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile pass saw and did; a failed pass carries the error text."""

    ok: bool
    jobs: int = 0
    running: int = 0
    idle: int = 0
    held: int = 0
    seconds: float = 0.0
    error: str = ""


def reconcile_once(adapter: CondorAdapter) -> Outcome:
    """One level-triggered pass. Lets no exception escape: a failed pass is an Outcome."""
    t0 = time.monotonic()
    try:
        ads = adapter.query("true", ["ClusterId", "ProcId", "JobStatus"])
    except PccError as exc:
        log.warning("reconcile: schedd query failed: %s; next pass retries", exc)
        return Outcome(ok=False, seconds=time.monotonic() - t0, error=str(exc))
    except Exception as exc:  # a bug must not kill the loop
        log.exception("reconcile: unexpected error; next pass retries")
        return Outcome(ok=False, seconds=time.monotonic() - t0, error=repr(exc))
    states = [ad.get("JobStatus") for ad in ads]
    outcome = Outcome(
        ok=True,
        jobs=len(ads),
        running=states.count(JobStatus.RUNNING),
        idle=states.count(JobStatus.IDLE),
        held=states.count(JobStatus.HELD),
        seconds=time.monotonic() - t0,
    )
    log.info(
        "reconcile: pool up; %d jobs (%d running, %d idle, %d held); pass took %.0f ms",
        outcome.jobs,
        outcome.running,
        outcome.idle,
        outcome.held,
        outcome.seconds * 1000,
    )
    return outcome


def serve(settings: Settings, stop: threading.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); stops the embedded pool if it started it."""
    stop = stop or threading.Event()
    pool: PersonalPool | None = None
    started_pool = False
    if settings.embedded:
        pool = settings.embedded_pool()
        started_pool = pool.master_pid() is None
        status = pool.start()
        log.info(
            "pool %s: CONDOR_CONFIG=%s, tools in %s, logs in %s",
            "started" if started_pool else "already running",
            status.condor_config,
            status.bin_dir,
            status.log_dir,
        )
        ids = pool.client_env().get("CONDOR_IDS")
        use_pool(pool.config_file, ids)
        log.info(
            "HTCondor's tools: export CONDOR_CONFIG=%s%s PATH=%s:$PATH",
            status.condor_config,
            f" CONDOR_IDS={ids}" if ids else "",
            status.bin_dir,
        )
    else:
        assert settings.external_condor_config is not None
        use_pool(settings.external_condor_config)
        log.info("using the existing pool of CONDOR_CONFIG=%s", settings.external_condor_config)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)

    scheduler = BackgroundScheduler()
    try:
        adapter = CondorAdapter()
        scheduler.add_job(
            reconcile_once,
            "interval",
            args=[adapter],
            seconds=settings.poll_seconds,
            id="reconcile",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        reconcile_once(adapter)
        log.info("pcc serve running; reconcile every %.0f s; Ctrl-C stops", settings.poll_seconds)
        stop.wait()
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        if pool is not None and started_pool:
            log.info("stopping the pool this serve started")
            pool.stop()
    return 0
