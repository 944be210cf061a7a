"""``python -m tests.fakes.opennebula [--host H] [--port P] [--password-file F]``: serve a
demo cloud (user ``pcc``; a public network, VM templates and images for the ``tiny``
image) until interrupted; prints the XML-RPC URL on its first line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from tests.fakes.opennebula.seed import demo_cloud
from tests.fakes.opennebula.server import start_fake_opennebula


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.opennebula")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password-file", type=Path, help="the pcc user's password (default: 'pcc')")
    parser.add_argument("--step", type=float, default=0.05, help="seconds per life-cycle step")
    args = parser.parse_args(argv)
    password = args.password_file.read_text().strip() if args.password_file else "pcc"
    url, stop = start_fake_opennebula(
        demo_cloud(password, step=args.step, record=False), args.host, args.port
    )
    print(url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
