"""The `pcc` command: a tree of subcommands, each a function returning an exit status.

Only :func:`main` turns exceptions into exit codes and one line on stderr (``--debug``
adds the traceback). The user commands (reservations, sites, users, tokens) go to the
local store, or with ``--url`` (``$PCC_URL``, client.toml) to a controller's REST API:
see :mod:`pcc.cli.backend`.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pcc import __version__
from pcc.cli import accounts, booked, reservations
from pcc.common.errors import (
    CondorError,
    ConfigError,
    Conflict,
    PccError,
    PoolError,
    Unauthenticated,
    UserInputError,
)
from pcc.common.timefmt import human

if TYPE_CHECKING:
    from pcc.controller.settings import Settings

log = logging.getLogger("pcc")


class ExitStatus(enum.IntEnum):
    """What `pcc` returns; :func:`exit_status` maps exceptions onto these, once."""

    OK = 0
    ERROR = 1
    USAGE = 2  # bad configuration or input, or no such thing (NotFound, Forbidden)
    POOL = 3  # the HTCondor pool is not installed, not running, or not set up for PCC (condor check)
    REFUSED = 4  # HTCondor refused an operation, or the request conflicts (capacity, state)
    UNAUTHENTICATED = 5  # a client with no API token, or one the controller refuses
    INTERRUPTED = 130


def exit_status(exc: BaseException) -> ExitStatus:
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, PoolError):
        return ExitStatus.POOL
    if isinstance(exc, CondorError | Conflict):
        return ExitStatus.REFUSED
    if isinstance(exc, Unauthenticated):
        return ExitStatus.UNAUTHENTICATED
    if isinstance(exc, ConfigError | UserInputError):
        return ExitStatus.USAGE
    return ExitStatus.ERROR


EXIT_CODES = """exit codes:
  0  success
  1  error
  2  bad configuration or bad input, or no such reservation
  3  the HTCondor pool is not installed or not running; for `pcc condor check`: a
     setting of the pool would make reservations late or stall
  4  HTCondor refused an operation, or the request conflicts (not enough capacity, ...)
  5  not logged in: no API token for --url, or the controller refused it
  130 interrupted

the user commands (reserve, list, show, cancel, extend, sites, images, slots, users,
tokens) act on this host's store, or, given a controller's URL (--url, else $PCC_URL,
else [client] url in $XDG_CONFIG_HOME/pcc/client.toml; --config or --state-dir mean this
host's store), go through its REST API with the token in $PCC_TOKEN or in the token file
([client] token_file, default $XDG_CONFIG_HOME/pcc/token, mode 0600): `pcc login --url
URL` writes both files."""


def error_text(exc: BaseException) -> str:
    """The one line `pcc` prints for a failure (a capacity conflict says when it would fit)."""
    text = str(exc) if isinstance(exc, PccError) else f"{type(exc).__name__}: {exc}"
    window = exc.details.get("next_window") if isinstance(exc, Conflict) else None
    if window is not None:
        text += f"; it would fit from {human(window.begin)} to {human(window.end)}"  # type: ignore[attr-defined]
    return text


def _settings(args: argparse.Namespace) -> Settings:
    from pcc.controller.settings import Settings

    return Settings.from_env(args.state_dir, args.config)


def cmd_condor_install(args: argparse.Namespace, out: TextIO) -> int:
    from pcc.condor_config import install_condor

    settings = _settings(args)
    pool = settings.embedded_pool()
    argv = [
        "--prefix",
        str(pool.prefix),
        "--cache",
        str(settings.download_cache),
        "--constraints",
        str(settings.state_dir / "constraints.txt"),
    ]
    if args.force:
        argv.append("--force")
    return install_condor.main(argv)


def cmd_condor_start(args: argparse.Namespace, out: TextIO) -> int:
    pool = _settings(args).embedded_pool()
    status = pool.start()
    print(f"pool running (condor_master pid {status.master_pid})", file=out)
    return _print_status(status, out, args.output)


def cmd_condor_stop(args: argparse.Namespace, out: TextIO) -> int:
    pool = _settings(args).embedded_pool()
    print("pool stopped" if pool.stop() else "pool was not running", file=out)
    return 0


def cmd_condor_status(args: argparse.Namespace, out: TextIO) -> int:
    settings = _settings(args)
    pool = settings.embedded_pool()
    if pool.installed_version is None:
        raise PoolError(
            f"HTCondor is not installed in {pool.prefix} ({settings.where()}): "
            "run `make install` or `pcc condor install`"
        )
    status = pool.status()
    rc = _print_status(status, out, args.output)
    if not status.running:
        raise PoolError(
            f"the pool is not running (its state in {pool.local_dir}; {settings.where()}): "
            "start it with `pcc condor start`"
        )
    return rc


def _print_status(status, out: TextIO, output: str) -> int:  # type: ignore[no-untyped-def]
    if output == "json":
        doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(status).items()}
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    print(f"CONDOR_CONFIG={status.condor_config}", file=out)
    if status.condor_ids:
        print(f"CONDOR_IDS={status.condor_ids}", file=out)
    print(f"bin: {status.bin_dir}", file=out)
    print(f"logs: {status.log_dir}", file=out)
    print(f"version: {status.version}", file=out)
    print(f"running: {'yes' if status.running else 'no'}", file=out)
    if status.collector:
        print(f"collector: {status.collector}", file=out)
    for daemon in status.daemons:
        print(f"  {daemon}", file=out)
    ids = f" CONDOR_IDS={status.condor_ids}" if status.condor_ids else ""
    print(
        f"use the tools: export CONDOR_CONFIG={status.condor_config}{ids} PATH={status.bin_dir}:$PATH",
        file=out,
    )
    return 0


def cmd_condor_check(args: argparse.Namespace, out: TextIO) -> int:
    """Name each setting of the pool PCC is pointed at (embedded or existing) that would make
    reservations late or stall, with the value to set; exit 3 when there is one."""
    from pcc.condor.adapter import use_pool
    from pcc.condor.knobs import findings, knobs_for, read_values

    settings = _settings(args)
    if settings.embedded:
        pool = settings.embedded_pool()
        config, ids = pool.config_file, pool.client_env().get("CONDOR_IDS")
        if not config.is_file():
            raise PoolError(
                f"the embedded pool has no configuration yet ({config}; {settings.where()}): "
                "start it with `pcc condor start`"
            )
    else:
        assert settings.external_condor_config is not None
        config, ids = settings.external_condor_config, None  # CONDOR_IDS, if needed, from the environment
    use_pool(config, ids)
    pool_values = read_values()
    found = findings(pool_values.values, knobs_for(settings.boot_universe))
    if args.output == "json":
        doc = {
            "condor_config": str(config),
            "ok": not found,
            "read_from": pool_values.sources,
            "settings": pool_values.values,
            "findings": [asdict(f) for f in found],
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        for daemon, source in pool_values.sources.items():
            print(f"{daemon} settings read from {source}", file=out)
        for finding in found:
            print(finding.text(), file=out)
        if found:
            print(
                f"the pool at CONDOR_CONFIG={config} would make reservations late or stall: "
                f"{len(found)} setting{'s' if len(found) > 1 else ''} to change (then condor_reconfig)",
                file=out,
            )
        else:
            print(f"the pool at CONDOR_CONFIG={config} is set up for PCC", file=out)
    return ExitStatus.POOL if found else ExitStatus.OK


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from pcc.controller.serve import serve

    if not args.demo:
        return serve(_settings(args))
    from pcc.dev.demo import start_demo, welcome

    settings = _settings(args)
    pool_user = settings.embedded_pool().daemon_user().pw_name if settings.embedded else None
    demo = start_demo(settings.state_dir, pool_user, os.environ.get("PCC_DEMO_ADDRESS", "127.0.0.2"))
    try:
        settings = _settings(args)
        if not settings.api.enabled:
            welcome(settings, out)
        return serve(settings, on_api=lambda url: welcome(settings, out, url))
    finally:
        demo.stop()


Handler = Callable[[argparse.Namespace, TextIO], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcc",
        description="Personal Cloud Controller: reservable virtual clusters on HTCondor.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pcc {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages and show tracebacks")
    parser.add_argument("--state-dir", type=Path, help="state directory (default: $PCC_STATE_DIR)")
    parser.add_argument(
        "--config", type=Path, help="pcc.toml (default: $PCC_CONFIG, else <state dir>/pcc.toml)"
    )
    parser.add_argument(
        "--url",
        help="a controller's address: the user commands go through its REST API "
        "(default: $PCC_URL, else client.toml's; none: this host's store)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the controller (reconcile loop) in the foreground")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="also start a local demo site (sshd on 127.0.0.2, the test image); `make run` does",
    )
    serve.set_defaults(handler=cmd_serve)

    reservations.add_commands(sub)
    accounts.add_commands(sub)
    booked.add_commands(sub)

    condor = sub.add_parser("condor", help="the embedded personal HTCondor pool (`check`: any pool PCC uses)")
    csub = condor.add_subparsers(dest="condor_command", metavar="ACTION", required=True)
    inst = csub.add_parser("install", help="install Debian's HTCondor into the state directory")
    inst.add_argument("--force", action="store_true", help="reinstall even if installed")
    inst.set_defaults(handler=cmd_condor_install)
    for name, handler, text in (
        ("start", cmd_condor_start, "start the pool and wait until it can run jobs"),
        ("stop", cmd_condor_stop, "stop the pool"),
        ("status", cmd_condor_status, "print CONDOR_CONFIG, tool and log paths"),
        (
            "check",
            cmd_condor_check,
            "name the settings of the pool PCC uses (embedded or existing) that would make "
            "reservations late or stall, with the values to set",
        ),
    ):
        p = csub.add_parser(name, help=text)
        p.set_defaults(handler=handler)
        if name != "stop":
            p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("apscheduler", "paramiko", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    handler: Handler = args.handler
    try:
        return int(handler(args, out))
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # every failure is one line on stderr; --debug adds the traceback
        if args.debug:
            log.exception("command failed")
        print(f"pcc: error: {error_text(exc)}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
