"""`pcc-job`: the entry points HTCondor jobs run. A job publishes its live status into its
own job ad, so `condor_q -af Pcc...` shows it.

How an attribute reaches the ad depends on where the job runs: a vanilla job with
``+WantIOProxy = true`` uses chirp; a local-universe job (no chirp there) edits its own ad
through the schedd, which it reaches with the ``CONDOR_CONFIG`` its submit description
passes in ``environment``.

A failed boot tells DAGMan whether to try again through its exit status: the DAG says
``RETRY BOOT_<site> N UNLESS-EXIT 42`` and a boot the site refused for good (see
:data:`PERMANENT_BOOT_ERRORS`) exits :attr:`ExitStatus.PERMANENT` (42).
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2

from pcc import __version__
from pcc.common.errors import (
    CapacityError,
    ConfigError,
    PccError,
    PermanentError,
    TemporaryError,
    UnsupportedError,
    UserInputError,
)
from pcc.common.jobstate import BOOT_PERMANENT_EXIT, PccState
from pcc.controller.openssh import SharedConnection
from pcc.controller.settings import Settings, SiteEntry
from pcc.controller.siteclient import SiteClient
from pcc.jobs.monitor import node_attrs

ATTR_NAME = re.compile(r"^Pcc[A-Za-z0-9]{1,60}\Z")
log = logging.getLogger("pcc.jobs.main")

# What a site's refusal of a boot means when SiteClient.boot raises it (the class its error
# document names): an unknown image or a bad key (UserInputError), not enough capacity
# (CapacityError), a bad site configuration (ConfigError), ENT not supported
# (UnsupportedError, a UserInputError), or what the site itself calls permanent. Another
# attempt cannot succeed. Everything else (TemporaryError and its subclasses such as
# ProtocolError, DriverError, a plain PccError) may, and is retried.
PERMANENT_BOOT_ERRORS: tuple[type[PccError], ...] = (
    UserInputError,
    CapacityError,
    ConfigError,
    UnsupportedError,
    PermanentError,
)


class ExitStatus(enum.IntEnum):
    """What `pcc-job` returns. DAGMan reads it: the BOOT nodes' ``RETRY ... UNLESS-EXIT``
    names :attr:`PERMANENT`, so only that status stops DAGMan from retrying a boot."""

    OK = 0
    ERROR = 1  # worth retrying
    USAGE = 2  # a bad command line or local configuration (from :func:`exit_status`)
    # A boot the site refused for good (PERMANENT_BOOT_ERRORS): DAGMan does not retry it.
    # 42 is far from the small codes Python, shells and HTCondor's own tools use.
    PERMANENT = BOOT_PERMANENT_EXIT


@dataclass(frozen=True)
class JobIdentity:
    """Which job this process is, read from the ad file HTCondor gives every job."""

    cluster: int
    proc: int
    universe: int
    chirp_config: Path | None

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> JobIdentity:
        from pcc.condor.adapter import Universe

        env = dict(os.environ if env is None else env)
        ad_file = env.get("_CONDOR_JOB_AD")
        if not ad_file or not Path(ad_file).is_file():
            raise PccError("not running as an HTCondor job (no $_CONDOR_JOB_AD)")
        ad = classad2.parseOne(Path(ad_file).read_text())
        chirp = env.get("_CONDOR_CHIRP_CONFIG")
        return cls(
            int(ad["ClusterId"]),
            int(ad["ProcId"]),
            int(ad.get("JobUniverse", Universe.VANILLA)),
            Path(chirp) if chirp else None,
        )

    @property
    def has_chirp(self) -> bool:
        """Only jobs submitted with ``+WantIOProxy = true`` get a chirp configuration."""
        return self.chirp_config is not None and self.chirp_config.exists()


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["PccState=running", "PccNodesUp=2"]`` -> ClassAd expression text per attribute.

    Values that parse as integers or booleans stay so; everything else becomes a string.
    Only ``Pcc*`` attribute names are accepted: a job must not rewrite HTCondor's own.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not ATTR_NAME.match(name):
            raise UserInputError(f"expected PccName=VALUE, got {item!r}")
        if re.fullmatch(r"-?\d{1,18}", value) or value in ("true", "false"):
            out[name] = value
        else:
            out[name] = classad2.quote(value)
    return out


def publish(attrs: dict[str, str], identity: JobIdentity | None = None) -> str:
    """Write ``attrs`` (expression text) into this job's own ad; returns the path used."""
    identity = identity or JobIdentity.from_environment()
    if identity.has_chirp:
        import htchirp

        with htchirp.HTChirp() as chirp:
            for name, expr in attrs.items():
                chirp.set_job_attr(name, expr)
        return "chirp"
    import htcondor2

    schedd = htcondor2.Schedd()
    job = f"{identity.cluster}.{identity.proc}"
    for name, expr in attrs.items():
        schedd.edit(job, name, expr)
    return "schedd"


def _settings() -> Settings:
    return Settings.from_env()


def _site_client(settings: Settings, site: SiteEntry, connection: SharedConnection) -> SiteClient:
    t = settings.timings
    return SiteClient(site, timeout=t.ssh_timeout_s, boot_timeout=t.boot_timeout_s, connection=connection)


@contextlib.contextmanager
def _client(settings: Settings, site: str) -> Iterator[SiteClient]:
    """A client of ``site`` whose calls share one login (OpenSSH's connection sharing, closed
    on exit): a teardown's `shutdown` and `clean` log in once, and a short job loads no
    paramiko. A job that tries again gets a new login (no wait between attempts)."""
    entry = settings.site(site)
    with SharedConnection(entry, settings.timings.ssh_timeout_s, reconnect_s=0) as connection:
        yield _site_client(settings, entry, connection)


def boot_exit_status(exc: BaseException) -> ExitStatus:
    """How a failed boot ends its BOOT node: :attr:`ExitStatus.PERMANENT` (not retried) when
    the exception says another attempt cannot succeed, else :attr:`ExitStatus.ERROR`."""
    if isinstance(exc, PERMANENT_BOOT_ERRORS) and not isinstance(exc, TemporaryError):
        return ExitStatus.PERMANENT
    return ExitStatus.ERROR


def cmd_boot(args: argparse.Namespace) -> int:
    """`pragma boot` at the site. A failure publishes whether DAGMan will retry and exits
    ERROR (retried) or PERMANENT (not retried: the state is ``failed`` at once, so the
    controller marks the allocation failed without waiting for attempts that cannot help)."""
    settings = _settings()
    site = settings.site(args.site)
    res_dir = settings.dag_dir / args.reservation
    identity = JobIdentity.from_environment()
    attempt = f"attempt {args.attempt + 1}/{args.attempts}"
    key = (res_dir / "key.pub").read_text()  # a file, not an argument: job ads are public
    called = {"PccBootCalled": int(time.time()), "PccMessage": f"booting ({attempt})"}
    publish_values({**called, "PccState": PccState.BOOTING}, identity)
    try:
        with _client(settings, site.name) as client:
            result = client.boot(args.image, args.cpus, args.reservation, key)
    except PccError as exc:
        status = boot_exit_status(exc)
        permanent = status is ExitStatus.PERMANENT
        last = permanent or args.attempt + 1 >= args.attempts
        if permanent:
            next_step = f"{type(exc).__name__} is permanent: no retry"
        elif last:
            next_step = "no attempt left"
        else:
            next_step = f"DAGMan retries in {settings.timings.retry_delay_s:.0f} s"
        log.error(
            "reservation %s site %s: boot failed (%s): %s; %s",
            args.reservation,
            site.name,
            attempt,
            exc,
            next_step,
        )
        publish_values(
            {
                "PccState": PccState.FAILED if last else PccState.RETRYING,
                "PccMessage": f"{attempt}: {exc}"[:500],
            },
            identity,
        )
        if not last:
            time.sleep(settings.timings.retry_delay_s)
        return status
    publish_values(
        {"PccState": PccState.BOOTED, "PccMessage": result.message, **node_attrs(result.status)},
        identity,
    )
    log.info("reservation %s site %s: booted", args.reservation, site.name)
    return ExitStatus.OK


def cmd_monitor(args: argparse.Namespace) -> int:
    """One site's monitor (see :mod:`pcc.jobs.monitor`): runs until HTCondor stops it."""
    # Only what a monitor needs: it runs for as long as its site is configured, and every
    # module imported stays in its memory (pcc.condor.monitors would bring the DAG code).
    from pcc.condor.adapter import CondorAdapter
    from pcc.jobs.monitor import hold_constraint, run_monitor

    try:
        settings = _settings()
        site = settings.site(args.site)
        identity = JobIdentity.from_environment()
    except PccError:
        time.sleep(10)  # HTCondor starts a monitor that exits again: not in a tight loop
        raise
    t = settings.timings
    connection = SharedConnection(site, t.ssh_timeout_s)
    client = _site_client(settings, site, connection)
    condor = CondorAdapter()
    reported = [-1]

    def report_logins() -> None:  # into its own ad, when the count moves (rarely)
        if connection.logins != reported[0]:
            condor.edit(f"{identity.cluster}.{identity.proc}", "PccLogins", connection.logins)
            reported[0] = connection.logins

    log.info("site %s: monitor started (poll every %.0f s)", site.name, args.poll or t.watch_poll_s)
    run_monitor(
        site.name,
        args.poll or t.watch_poll_s,
        condor,
        client,
        hold_constraint(settings.controller_id, site.name),
        after_poll=report_logins,
    )
    return ExitStatus.OK


def cmd_teardown(args: argparse.Namespace) -> int:
    """`pragma shutdown` then `pragma clean` at every site, a few tries each: a HOLD node's
    teardown of its own site at the reservation's end, or FINAL's of every site."""
    settings = _settings()
    identity = JobIdentity.from_environment()
    # A HOLD node's ad showed its cluster's live status until now: it is being torn down.
    publish_values({"PccState": PccState.STOPPING, "PccMessage": "tearing down"}, identity)
    failures: list[str] = []
    done: list[str] = []
    for name in filter(None, args.sites.split(",")):
        for attempt in range(3):
            try:  # (a site gone from the configuration fails alone; the others are torn down)
                with _client(settings, name) as client:
                    client.shutdown(args.reservation)
                    client.clean(args.reservation)
                log.info("reservation %s site %s: torn down", args.reservation, name)
                done.append(name)
                break
            except PccError as exc:
                log.warning(
                    "reservation %s site %s: teardown attempt %d failed: %s",
                    args.reservation,
                    name,
                    attempt + 1,
                    exc,
                )
                if attempt == 2:
                    failures.append(f"{name}: {exc}")
                else:
                    time.sleep(settings.timings.retry_delay_s)
    if failures:
        publish_values(
            {
                "PccState": PccState.TEARDOWN_FAILED,
                "PccTornDown": ",".join(done),
                "PccMessage": "; ".join(failures)[:500],
            },
            identity,
        )
        return ExitStatus.ERROR
    publish_values(
        {"PccState": PccState.STOPPED, "PccTornDown": ",".join(done), "PccMessage": "torn down"}, identity
    )
    return ExitStatus.OK


def publish_values(values: dict[str, Any], identity: JobIdentity | None = None) -> str:
    """Publish Python values (str, int, bool) as ClassAd attributes of this job. PccState goes
    last: attributes are set one by one, and a reader that sees the new state must also
    see the details that go with it."""
    from pcc.condor.adapter import to_expr

    ordered = sorted(values.items(), key=lambda kv: kv[0] == "PccState")
    return publish({k: to_expr(v) for k, v in ordered}, identity)


def cmd_publish(args: argparse.Namespace) -> int:
    via = publish(parse_assignments(args.assignments))
    print(f"published {', '.join(args.assignments)} via {via}", file=sys.stderr)
    return 0


def exit_status(exc: BaseException) -> ExitStatus:
    """The status of an exception that reached the entry point (a boot's own failures are
    mapped by :func:`boot_exit_status` where they happen)."""
    return ExitStatus.USAGE if isinstance(exc, UserInputError | ConfigError) else ExitStatus.ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcc-job", description="Entry points that PCC's HTCondor jobs run.")
    parser.add_argument("--version", action="version", version=f"pcc-job {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pub = sub.add_parser("publish", help="set Pcc* attributes in this job's own ad (chirp or schedd)")
    pub.add_argument("assignments", nargs="+", metavar="PccName=VALUE")
    pub.set_defaults(handler=cmd_publish)
    boot = sub.add_parser("boot", help="boot one allocation at its site (a DAG's BOOT node)")
    boot.add_argument("--reservation", required=True)
    boot.add_argument("--site", required=True)
    boot.add_argument("--image", required=True)
    boot.add_argument("--cpus", type=int, required=True)
    boot.add_argument("--attempt", type=int, default=0, help="DAGMan's $(RETRY): 0 on the first try")
    boot.add_argument("--attempts", type=int, default=1)
    boot.set_defaults(handler=cmd_boot)
    monitor = sub.add_parser("monitor", help="write one site's live status into its HOLD jobs' ads")
    monitor.add_argument("--site", required=True)
    monitor.add_argument("--poll", type=float, default=0.0, help="seconds between site polls")
    monitor.set_defaults(handler=cmd_monitor)
    teardown = sub.add_parser(
        "teardown", help="shut down and clean the reservation at these sites (HOLD at the end, FINAL)"
    )
    teardown.add_argument("--reservation", required=True)
    teardown.add_argument("--sites", required=True)
    teardown.set_defaults(handler=cmd_teardown)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as exc:  # the bindings raise their own types; report them in one line
        text = str(exc) if isinstance(exc, PccError) else f"{type(exc).__name__}: {exc}"
        print(f"pcc-job: error: {text}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
