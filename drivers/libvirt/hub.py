"""A cluster's private network in user mode: a learning Ethernet switch over loopback UDP.

QEMU user networking isolates guests, and multicast would leave loopback, so each node's
private NIC is a libvirt ``<interface type='udp'>`` whose remote end is this hub on
127.0.0.1. The hub learns which port each MAC address lives on, forwards unicast frames
there and floods the rest. One hub per cluster, started detached by ``pragma boot``; it
exits when its pid file disappears (``pragma clean`` removes the cluster directory) or
when it is signalled.

    python -m pcc.drivers.libvirt.hub --port PORT --pidfile PATH
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
MODULE = "pcc.drivers.libvirt.hub"  # how `start` runs it, and how `stop` recognises it


def serve(port: int, pidfile: Path, check_every: float = 2.0) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, port))
    sock.settimeout(0.5)
    pidfile.write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    where: dict[bytes, tuple[str, int]] = {}
    peers: set[tuple[str, int]] = set()
    next_check = time.monotonic() + check_every
    while True:
        if time.monotonic() >= next_check:
            if not pidfile.exists():
                return 0
            next_check = time.monotonic() + check_every
        try:
            frame, src = sock.recvfrom(65536)
        except TimeoutError:
            continue
        if src[0] != LOOPBACK or len(frame) < 14:
            continue
        peers.add(src)
        where[frame[6:12]] = src
        dst = frame[0:6]
        if not dst[0] & 1 and dst in where:  # unicast to a known MAC
            if where[dst] != src:
                sock.sendto(frame, where[dst])
            continue
        for peer in peers:
            if peer != src:
                sock.sendto(frame, peer)


def start(port: int, pidfile: Path, timeout: float = 5.0) -> int:
    """Start a detached hub (it outlives the `pragma` process and its SSH session)."""
    pidfile.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--port", str(port), "--pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pidfile.exists() and pidfile.read_text().strip():
            return proc.pid
        if proc.poll() is not None:
            raise OSError(
                f"the private-network hub on {LOOPBACK}:{port} exited at start (code {proc.returncode})"
            )
        time.sleep(0.02)
    raise OSError(f"the private-network hub on {LOOPBACK}:{port} did not start")


def stop(pidfile: Path) -> bool:
    """Stop the hub named by ``pidfile`` (only if that pid really is a hub)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if MODULE.encode() not in cmdline:
        return False
    os.kill(pid, signal.SIGTERM)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="loopback UDP switch for one cluster's private network")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pidfile", type=Path, required=True)
    args = ap.parse_args(argv)
    return serve(args.port, args.pidfile)


if __name__ == "__main__":
    sys.exit(main())
