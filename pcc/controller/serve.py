"""`pcc serve`: the long-running controller. It owns the embedded pool's lifetime (when it
started it) and runs the reconcile loop on APScheduler, which only schedules passes."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from pcc.booked.config import describe
from pcc.condor.adapter import CondorAdapter, use_pool
from pcc.condor.dag import JobEnvironment, default_pcc_job
from pcc.condor.knobs import knobs_for, warn_about_pool
from pcc.condor.pool import PersonalPool
from pcc.controller.gauges import export_gauges
from pcc.controller.notify import Notifier
from pcc.controller.orphans import find_orphans
from pcc.controller.probes import run_probes
from pcc.controller.reconcile import Outcome, Reconciler
from pcc.controller.settings import Settings
from pcc.controller.store import Store

log = logging.getLogger(__name__)


def connect(settings: Settings, start_pool: bool = True) -> tuple[PersonalPool | None, bool, str | None]:
    """Point this process at the pool (starting the embedded one if asked and needed).

    Returns the embedded pool (or None), whether this call started it, and the user the
    pool's jobs run as (DAG directories must belong to it)."""
    if not settings.embedded:
        assert settings.external_condor_config is not None
        use_pool(settings.external_condor_config)
        log.info("using the existing pool of CONDOR_CONFIG=%s", settings.external_condor_config)
        # As root acting for another account (CONDOR_IDS), that account runs the jobs.
        ids = os.environ.get("CONDOR_IDS", "")
        owner = pwd.getpwuid(int(ids.split(".")[0])).pw_name if os.geteuid() == 0 and ids else None
        return None, False, owner
    pool = settings.embedded_pool()
    started = False
    if start_pool:
        started = pool.master_pid() is None
        status = pool.start()
        log.info(
            "pool %s: CONDOR_CONFIG=%s, tools in %s, logs in %s",
            "started" if started else "already running",
            status.condor_config,
            status.bin_dir,
            status.log_dir,
        )
    ids = pool.client_env().get("CONDOR_IDS")
    use_pool(pool.config_file, ids)
    if start_pool:
        log.info(
            "HTCondor's tools: export CONDOR_CONFIG=%s%s PATH=%s:$PATH",
            pool.config_file,
            f" CONDOR_IDS={ids}" if ids else "",
            pool.bin_dir,
        )
    return pool, started, pool.daemon_user().pw_name


def reconciler_for(settings: Settings, store: Store, dag_owner: str | None) -> Reconciler:
    condor_config = settings.external_condor_config or settings.embedded_pool().config_file
    env = JobEnvironment(
        pcc_job=default_pcc_job(),
        condor_config=condor_config,
        pcc_config=settings.config_file or settings.state_dir / "pcc.toml",
        state_dir=settings.state_dir,
    )
    return Reconciler(settings, store, CondorAdapter(), env, dag_owner)


def run_pass(reconciler: Reconciler) -> Outcome:
    """One reconcile pass, logged at INFO only when it changed something (else DEBUG)."""
    out = reconciler.reconcile_once()
    if not out.ok:
        log.warning("reconcile: pass failed (%s); next pass retries", "; ".join(out.errors)[:300])
        return out
    log.log(
        logging.INFO if out.changed else logging.DEBUG,
        "reconcile: %d jobs; %d DAGs submitted, %d removed, %d transitions; pass took %.0f ms",
        out.jobs,
        len(out.submitted),
        len(out.removed),
        out.transitions,
        out.seconds * 1000,
    )
    return out


def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """A scheduled job that logs its failure and lets the scheduler run it again later."""

    def run() -> None:
        try:
            job()
        except Exception:
            log.exception("%s job failed; it runs again at its next time", name)

    return run


def serve(
    settings: Settings, stop: threading.Event | None = None, on_api: Callable[[str], None] | None = None
) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); stops the embedded pool if it started it."""
    stop = stop or threading.Event()
    pool, started_pool, owner = connect(settings)
    # One WARNING per setting that would make reservations late or stall.
    warn_about_pool(knobs=knobs_for(settings.boot_universe))

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)

    scheduler = BackgroundScheduler()
    api = None
    try:
        store = Store(settings.database)
        store.sync_sites(settings.sites)
        reconciler = reconciler_for(settings, store, owner)
        scheduler.add_job(
            run_pass,
            "interval",
            args=[reconciler],
            seconds=settings.poll_seconds,
            id="reconcile",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),  # the first pass too: never two passes at once
        )
        # Each companion job has its own store connection and bounded, timed-out I/O, so a
        # hung site delays neither the other sites nor a reconcile pass.
        condor = CondorAdapter()  # the companions' own schedd handle (the loop keeps its own)
        notifier = Notifier(settings, Store(settings.database))
        prober, scanner, counter = (Store(settings.database) for _ in range(3))
        now = datetime.now(UTC)
        companions: list[tuple[str, Callable[[], object], float, datetime | None]] = [
            ("notify", notifier.send_due, max(settings.poll_seconds, 5.0), None),
            ("probe", lambda: run_probes(settings, prober, condor), settings.timings.probe_s, now),
            (
                "orphans",
                lambda: find_orphans(settings, scanner, condor),
                settings.timings.orphan_check_s,
                None,
            ),
            ("gauges", lambda: export_gauges(settings, counter), max(settings.poll_seconds, 15.0), now),
        ]
        if settings.booked is not None:
            from pcc.booked.connector import Connector, run_connector
            from pcc.controller.service import Service

            booked = settings.booked
            booked.password()  # a password file serve cannot read is a ConfigError now, not each poll
            connector = Connector(booked, Service(settings, Store(settings.database), sync_sites=False))
            companions.append(("booked", lambda: run_connector(connector), booked.poll_s, now))
            log.info("LibreBooking connector: %s, every %.0f s", describe(booked), booked.poll_s)
        for name, job, seconds, first in companions:
            when = {"next_run_time": first} if first else {}  # (None would add it paused)
            scheduler.add_job(
                _guarded(name, job),
                "interval",
                seconds=seconds,
                id=name,
                max_instances=1,
                coalesce=True,
                **when,
            )
        if settings.metrics_port:
            from pcc.controller.metrics import serve_metrics

            serve_metrics(settings.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", settings.metrics_port)
        if settings.api.enabled:
            from pcc.api.server import ApiServer

            api = ApiServer(settings)
            url = api.start()
            log.info("web page on %s/ and REST API on %s/api/v1 (docs: %s/api/docs)", url, url, url)
            if on_api:
                on_api(url)
        scheduler.start()
        log.info(
            "pcc serve running; reconcile every %.0f s; %d sites; Ctrl-C stops",
            settings.poll_seconds,
            len(settings.sites),
        )
        stop.wait()
    finally:
        if api is not None:
            api.stop()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        if pool is not None and started_pool:
            log.info("stopping the pool this serve started")
            pool.stop()
    return 0
