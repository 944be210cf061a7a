"""Loopback ports the libvirt driver holds per cluster in user mode: the forwarded SSH port
of each frontend (TCP, on the site's ``forward_address``) and the UDP ports of each
cluster's private-network hub. Both are persistent, ``flock``-guarded pools (the site's
:class:`~pcc.site.addresses.AddressPool`), so concurrent boots never share a port and
``clean`` gives them back."""

from __future__ import annotations

import socket
from pathlib import Path

from pcc.site.addresses import AddressPool
from pcc.site.config import NetworkConfig

LOOPBACK = "127.0.0.1"


def port_free(address: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Can this process bind ``address:port`` now (i.e. nobody else listens there)?"""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


class ClusterPorts:
    """The forwarded and link ports of the clusters at one site."""

    def __init__(self, staging: Path, network: NetworkConfig) -> None:
        self.network = network
        lo, hi = network.forward_ports
        self.forwards = AddressPool(staging / "forwards.json", [str(p) for p in range(lo, hi + 1)])
        lo, hi = network.link_ports
        self.links = AddressPool(staging / "links.json", [str(p) for p in range(lo, hi + 1)])

    def forward_port(self, cluster: str) -> int:
        """The frontend's forwarded SSH port (the same one again for the same cluster)."""
        address = self.network.forward_address
        (port,) = self.forwards.allocate(cluster, 1, lambda slot: port_free(address, int(slot)))
        return int(port)

    def link_ports(self, cluster: str, count: int) -> tuple[int, ...]:
        """``count`` loopback UDP ports: the hub's first, then one per node."""
        held = self.links.allocate(
            cluster, count, lambda slot: port_free(LOOPBACK, int(slot), socket.SOCK_DGRAM)
        )
        return tuple(int(p) for p in held)

    def release(self, cluster: str) -> tuple[str, ...]:
        """Give back the cluster's ports; returns the forwarded ones (what a user saw)."""
        self.links.release(cluster)
        return tuple(self.forwards.release(cluster))
