"""How the site's ``[network]`` modes become libvirt interfaces.

* ``user`` (laptops, tests): the frontend's public NIC is QEMU user networking (NAT, the
  guest at 10.0.2.15) with its SSH forwarded to ``forward_address:port``; the private
  network is a UDP link per node to the cluster's loopback hub (:mod:`.hub`).
* ``bridge`` (real sites): every NIC is on a host bridge — the public one, the private one,
  or an ENT network's.
"""

from __future__ import annotations

from collections.abc import Sequence

from pcc.common.errors import DriverError, UnsupportedError
from pcc.drivers.base import EntRequest, Interface, NodeSpec
from pcc.drivers.libvirt.domain import Nic
from pcc.site.config import NetworkConfig

# What QEMU user networking gives a guest: its address, the gateway (the host), DNS.
SLIRP_GUEST, SLIRP_PREFIX, SLIRP_GATEWAY, SLIRP_DNS = "10.0.2.15", 24, "10.0.2.2", "10.0.2.3"
LOOPBACK = "127.0.0.1"


def _nic(iface: Interface, attach: str, source: dict[str, object]) -> Nic:
    return Nic(
        iface.network,
        iface.mac,
        iface.ip,
        iface.prefix,
        iface.gateway,
        iface.dns,
        iface.guest_name,
        attach,
        source,
    )


def attach(
    node: NodeSpec,
    index: int,
    network: NetworkConfig,
    ent: Sequence[EntRequest] = (),
    forward_port: int | None = None,
    links: Sequence[int] = (),
) -> tuple[Nic, ...]:
    """The NICs of the ``index``-th node of a cluster (the frontend is 0). ``links`` are the
    cluster's hub ports in user mode (the hub's first, then one per node)."""
    out = []
    wanted = {e.name: e for e in ent}
    for iface in node.interfaces:
        if iface.network == "public":
            if network.mode == "user":
                if (iface.ip, iface.prefix, iface.gateway) != (SLIRP_GUEST, SLIRP_PREFIX, SLIRP_GATEWAY):
                    raise DriverError(
                        f"{node.name}: libvirt user networking gives the guest "
                        f"{SLIRP_GUEST}/{SLIRP_PREFIX} via {SLIRP_GATEWAY}, not {iface.ip}/{iface.prefix}"
                    )
                source: dict[str, object] = {
                    "forward_address": network.forward_address,
                    "forward_port": forward_port or 0,
                }
                out.append(_nic(iface, "user", source))
            else:
                assert network.public is not None
                out.append(_nic(iface, "bridge", {"bridge": network.public.bridge}))
        elif iface.network == "private":
            if network.mode == "user":
                ports = list(links) or [0] * (index + 2)
                source = {"address": LOOPBACK, "port": ports[0], "local_port": ports[index + 1]}
                out.append(_nic(iface, "udp", source))
            else:
                out.append(_nic(iface, "bridge", {"bridge": network.private_bridge}))
        else:
            configured = next((e for e in network.ent if e.name == iface.network), None)
            if network.mode != "bridge" or configured is None:
                raise UnsupportedError(f"ENT network {iface.network!r} is not supported at this site")
            request = wanted.get(iface.network)
            cidr = request.cidr if request else configured.cidr
            out.append(_nic(iface, "bridge", {"bridge": configured.bridge, "cidr": cidr}))
    return tuple(out)
