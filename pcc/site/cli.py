"""`pragma`, the site tool (command-compatible with pragma_boot). This is its skeleton:
the commands are listed and parsed, and the site-tool issue builds what they do."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pcc import __version__

COMMANDS = {
    "boot": "boot VC_NAME NUM_CPUS [key=PATH] [mem=FE[:COMPUTE]] ... - start a virtual cluster",
    "list": "list cluster [NAME] | list repository - show clusters or images",
    "shutdown": "shutdown NAME - stop a cluster's nodes",
    "clean": "clean NAME - remove a cluster's staged disks, seeds and addresses",
    "check": "check - self-check for health probes",
}


def build_parser() -> argparse.ArgumentParser:
    epilog = "commands:\n" + "\n".join(f"  {text}" for text in COMMANDS.values())
    parser = argparse.ArgumentParser(
        prog="pragma",
        description="PCC site tool (pragma_boot compatible).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pragma {__version__}")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs="*")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"pragma: error: '{args.command}' is not implemented in this version", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
