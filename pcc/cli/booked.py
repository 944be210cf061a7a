"""`pcc booked setup` and `pcc booked sync`: the operator's commands for a LibreBooking that
serves as PCC's calendar (``[booked]`` in pcc.toml). Both act on this host's store, as the
connector in `pcc serve` does; `sync` runs one poll now and prints what it did."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, TextIO

from pcc.cli.reservations import command
from pcc.common.errors import ConfigError


def _parts(args: argparse.Namespace) -> tuple[Any, Any]:
    from pcc.controller.service import Service
    from pcc.controller.settings import Settings
    from pcc.controller.store import Store

    settings = Settings.from_env(args.state_dir, args.config)
    if settings.booked is None:
        where = settings.config_file or settings.state_dir / "pcc.toml"
        raise ConfigError(f"{where}: no [booked] table: say which LibreBooking to use (see the README)")
    return settings.booked, Service(settings, Store(settings.database))


def cmd_setup(args: argparse.Namespace, out: TextIO) -> int:
    from pcc.booked.setup import setup

    config, service = _parts(args)
    report = setup(config, service)
    if args.output == "json":
        json.dump(asdict(report), out, indent=2)
        out.write("\n")
        return 0
    if not report.changed:
        print(f"LibreBooking at {config.url} is set up for PCC already; nothing changed", file=out)
        return 0
    for what, names in (
        ("attributes created", report.attributes_created),
        ("attributes updated", report.attributes_updated),
        ("resources created", report.resources_created),
        ("resources updated", report.resources_updated),
    ):
        if names:
            print(f"{what}: {', '.join(names)}", file=out)
    return 0


def cmd_sync(args: argparse.Namespace, out: TextIO) -> int:
    from pcc.booked.connector import Connector

    config, service = _parts(args)
    report = Connector(config, service).poll()
    if args.output == "json":
        json.dump(asdict(report), out, indent=2)
        out.write("\n")
        return 0

    def names(items: list[str]) -> str:
        return ", ".join(items) or "none"

    print(
        f"{report.bookings} bookings of PCC resources; reservations made: {names(report.created)}; "
        f"rejected: {names(report.rejected)}; ends moved: {names(report.moved)}; "
        f"cancelled: {names(report.cancelled)}; {report.statuses} statuses and "
        f"{report.resources} resources written",
        file=out,
    )
    for problem in report.problems:
        print(f"problem: {problem}", file=out)
    return 0


def add_commands(sub: Any) -> None:
    booked = sub.add_parser("booked", help="LibreBooking as PCC's calendar ([booked] in pcc.toml)")
    bsub = booked.add_subparsers(dest="booked_command", metavar="ACTION", required=True)
    command(bsub, "setup", cmd_setup, "create PCC's attributes and resources in LibreBooking (idempotent)")
    command(bsub, "sync", cmd_sync, "poll LibreBooking once now, as `pcc serve` does on its own")
