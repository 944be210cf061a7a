"""`pcc-job`: the entry points HTCondor jobs run. A job publishes its live status into its
own job ad, so `condor_q -af Pcc...` shows it.

How an attribute reaches the ad depends on where the job runs: a vanilla job with
``+WantIOProxy = true`` uses chirp; a local-universe job (no chirp there) edits its own ad
through the schedd, which it reaches with the ``CONDOR_CONFIG`` its submit description
passes in ``environment``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import classad2

from pcc import __version__
from pcc.errors import PccError, UserInputError

ATTR_NAME = re.compile(r"^Pcc[A-Za-z0-9]{1,60}$")
LOCAL_UNIVERSE = 12


@dataclass(frozen=True)
class JobIdentity:
    """Which job this process is, read from the ad file HTCondor gives every job."""

    cluster: int
    proc: int
    universe: int
    chirp_config: Path | None

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> JobIdentity:
        env = dict(os.environ if env is None else env)
        ad_file = env.get("_CONDOR_JOB_AD")
        if not ad_file or not Path(ad_file).is_file():
            raise PccError("not running as an HTCondor job (no $_CONDOR_JOB_AD)")
        ad = classad2.parseOne(Path(ad_file).read_text())
        chirp = env.get("_CONDOR_CHIRP_CONFIG")
        return cls(
            int(ad["ClusterId"]),
            int(ad["ProcId"]),
            int(ad.get("JobUniverse", 5)),
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


def cmd_publish(args: argparse.Namespace) -> int:
    via = publish(parse_assignments(args.assignments))
    print(f"published {', '.join(args.assignments)} via {via}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcc-job", description="Entry points that PCC's HTCondor jobs run.")
    parser.add_argument("--version", action="version", version=f"pcc-job {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pub = sub.add_parser("publish", help="set Pcc* attributes in this job's own ad (chirp or schedd)")
    pub.add_argument("assignments", nargs="+", metavar="PccName=VALUE")
    pub.set_defaults(handler=cmd_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except PccError as exc:
        print(f"pcc-job: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # the bindings raise their own types; report them in one line
        print(f"pcc-job: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
