"""Hosts on one machine: network namespaces joined by veth pairs to a bridge in a namespace of
their own (a LAN), as tests of what crosses a network use them. Root only (``ip netns``).

Nothing touches the machine's own network: the bridge and every address live inside the
namespaces, which :meth:`Lan.destroy` removes with whatever still runs in them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field

from pcc.common.errors import PccError

IP = "/usr/sbin/ip"


def ip(*args: str) -> str:
    proc = subprocess.run([IP, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PccError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass
class Lan:
    """A /24 (``subnet`` is its first three octets) whose hosts are namespaces named
    ``pcc<tag>-<host>``; ``hosts`` maps a host's name to its address."""

    subnet: str = "10.77.0"
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: dict[str, str] = field(default_factory=dict)

    @property
    def bridge_ns(self) -> str:
        return f"pcc{self.tag}-lan"

    def ns(self, host: str) -> str:
        return f"pcc{self.tag}-{host}"

    def create(self) -> Lan:
        if os.geteuid() != 0:
            raise PccError("network namespaces need root (ip netns add)")
        ip("netns", "add", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        ip("-n", self.bridge_ns, "link", "set", "lo", "up")
        return self

    def add_host(self, name: str, last_octet: int) -> str:
        """A host on the LAN at ``subnet.last_octet`` (its own loopback up too)."""
        address = f"{self.subnet}.{last_octet}"
        ns = self.ns(name)
        inside, outside = f"pv{self.tag}{last_octet}a", f"pv{self.tag}{last_octet}b"
        ip("netns", "add", ns)
        self.hosts[name] = address
        ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        ip("link", "set", inside, "netns", ns)
        ip("link", "set", outside, "netns", self.bridge_ns)
        ip("-n", ns, "link", "set", inside, "name", "eth0")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.bridge_ns, "link", "set", outside, "master", "br0")
        ip("-n", self.bridge_ns, "link", "set", outside, "up")
        return address

    def on(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``host`` (in its namespace)."""
        return [IP, "netns", "exec", self.ns(host), *argv]

    def pids(self, host: str) -> list[int]:
        with contextlib.suppress(PccError):
            return [int(p) for p in ip("netns", "pids", self.ns(host)).split()]
        return []

    def destroy(self, grace_s: float = 10.0) -> None:
        """Stop what still runs on the hosts (TERM, then KILL) and remove every namespace."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for host in self.hosts for p in self.pids(host)]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace_s
            while pids and time.monotonic() < deadline:
                pids = [p for host in self.hosts for p in self.pids(host)]
                time.sleep(0.2)
        for ns in [*(self.ns(h) for h in self.hosts), self.bridge_ns]:
            with contextlib.suppress(PccError):
                ip("netns", "del", ns)
        self.hosts.clear()
