"""The site's configuration: a TOML file, read as data (never executed), validated at load.

Found at ``--config PATH``, else ``$PRAGMA_CONFIG``, else ``/etc/pragma/site.toml``.
Every error is one line naming the file and the key. See ``images/site.example.toml``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcc.common.names import CLUSTER_NAME, NETWORK_NAME
from pcc.common.tomlcfg import TomlReader, read_toml

DEFAULT_PATH = Path("/etc/pragma/site.toml")


@dataclass(frozen=True)
class PublicPool:
    """Bridge mode: the public addresses frontends get, and how they reach the world."""

    addresses: tuple[str, ...]
    prefix: int
    gateway: str
    dns: tuple[str, ...]
    bridge: str


@dataclass(frozen=True)
class EntNetwork:
    name: str
    cidr: str
    bridge: str


@dataclass(frozen=True)
class NetworkConfig:
    mode: str  # "user" or "bridge"
    private_cidr: str
    # user mode: the frontend's SSH is forwarded to this loopback address, on a port from the range
    forward_address: str = "127.0.0.1"
    forward_ports: tuple[int, int] = (22000, 22999)
    # user mode: loopback UDP ports for the clusters' private networks (a hub per cluster)
    link_ports: tuple[int, int] = (23000, 23999)
    public: PublicPool | None = None
    private_bridge: str | None = None
    dns: tuple[str, ...] = ()
    ent: tuple[EntNetwork, ...] = ()


@dataclass(frozen=True)
class SiteConfig:
    path: Path
    name: str
    deployment_type: str
    cpus: int
    memory_mb: int
    reserve_cpus: int
    reserve_memory_mb: int
    ent_enabled: bool
    repository: Path
    staging: Path
    driver: str
    driver_settings: Mapping[str, Any]
    network: NetworkConfig
    boot_timeout_s: float = 300.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    # How many boots this site runs at once; more wait (`pragma boot` blocks) for a turn.
    max_boots: int = 4

    @property
    def usable_cpus(self) -> int:
        return self.cpus - self.reserve_cpus

    @property
    def usable_memory_mb(self) -> int:
        return self.memory_mb - self.reserve_memory_mb


def locate(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("PRAGMA_CONFIG"):
        return Path(env["PRAGMA_CONFIG"])
    return DEFAULT_PATH


def _address_range(reader: TomlReader, key: str) -> tuple[str, ...]:
    text = reader.get(key, str)
    first, sep, last = text.partition("-")
    try:
        start = ipaddress.ip_address(first.strip())
        end = ipaddress.ip_address(last.strip()) if sep else start
    except ValueError:
        raise reader.fail(key, f"expected 'FIRST-LAST' addresses, got {text!r}") from None
    if int(end) < int(start) or int(end) - int(start) > 4096:
        raise reader.fail(key, f"range {text!r} is empty or larger than 4096 addresses")
    return tuple(str(ipaddress.ip_address(i)) for i in range(int(start), int(end) + 1))


def _port_range(reader: TomlReader, key: str, default: str) -> tuple[int, int]:
    lo, _, hi = reader.get(key, str, default).partition("-")
    try:
        ports = (int(lo), int(hi or lo))
    except ValueError:
        raise reader.fail(key, "expected 'FIRST-LAST' port numbers") from None
    if not (1024 <= ports[0] <= ports[1] <= 65535):
        raise reader.fail(key, f"ports must be within 1024-65535, got {ports}")
    return ports


def _network(reader: TomlReader) -> NetworkConfig:
    mode = reader.get("mode", str, "user")
    if mode not in ("user", "bridge"):
        raise reader.fail("mode", f"must be 'user' or 'bridge', got {mode!r}")
    private = reader.get("private_cidr", str, "10.1.0.0/24")
    try:
        net = ipaddress.ip_network(private)
    except ValueError:
        raise reader.fail("private_cidr", f"not a network: {private!r}") from None
    if net.num_addresses < 4:
        raise reader.fail("private_cidr", "too small")
    dns = tuple(reader.get("dns", list, []))
    ent: list[EntNetwork] = []
    for i, item in enumerate(reader.get("ent", list, [])):
        sub = TomlReader(reader.path, item if isinstance(item, dict) else {}, f"network.ent[{i}]")
        name = sub.get("name", str)
        if not NETWORK_NAME.match(name):
            raise sub.fail("name", f"invalid network name {name!r}")
        cidr = sub.get("cidr", str)
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            raise sub.fail("cidr", f"not a network: {cidr!r}") from None
        ent.append(EntNetwork(name, cidr, sub.get("bridge", str, "")))
    if mode == "user":
        ports = _port_range(reader, "forward_ports", "22000-22999")
        links = _port_range(reader, "link_ports", "23000-23999")  # UDP, on 127.0.0.1
        address = reader.address("forward_address", "127.0.0.1")
        if not ipaddress.ip_address(address).is_loopback:
            raise reader.fail("forward_address", "user mode forwards to a loopback address only")
        return NetworkConfig("user", str(net), address, ports, links, dns=dns, ent=tuple(ent))
    pub = reader.sub("public")
    assert pub is not None
    netmask = pub.get("netmask", str)
    try:
        prefix = ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen
    except ValueError:
        raise pub.fail("netmask", f"not a netmask: {netmask!r}") from None
    public = PublicPool(
        addresses=_address_range(pub, "range"),
        prefix=prefix,
        gateway=pub.address("gateway"),
        dns=tuple(pub.get("dns", list, [])) or dns,
        bridge=pub.get("bridge", str),
    )
    return NetworkConfig(
        "bridge",
        str(net),
        public=public,
        private_bridge=reader.get("private_bridge", str),
        dns=dns,
        ent=tuple(ent),
    )


def load(path: Path) -> SiteConfig:
    """Read and validate a site configuration file."""
    data = read_toml(path, "site configuration")
    top = TomlReader(path, data)
    site = top.sub("site")
    assert site is not None
    name = site.get("name", str)
    if not CLUSTER_NAME.match(name):
        raise site.fail("name", f"invalid site name {name!r} (lower-case letters, digits, '-')")
    cpus = site.positive("cpus")
    memory = site.positive("memory_mb")
    reserve_cpus = site.positive("reserve_cpus", 0, allow_zero=True)
    reserve_memory = site.positive("reserve_memory_mb", 0, allow_zero=True)
    if reserve_cpus >= cpus:
        raise site.fail("reserve_cpus", f"must be less than cpus ({cpus})")
    if reserve_memory >= memory:
        raise site.fail("reserve_memory_mb", f"must be less than memory_mb ({memory})")
    repo = top.sub("repository")
    staging = top.sub("staging")
    driver = top.sub("driver")
    assert repo is not None and staging is not None and driver is not None
    driver_name = driver.get("name", str)
    driver_settings = driver.get(driver_name, dict, {})
    network_reader = top.sub("network", required=False) or TomlReader(path, {}, "network")
    return SiteConfig(
        path=path,
        name=name,
        deployment_type=site.get("deployment_type", str, driver_name),
        cpus=cpus,
        memory_mb=memory,
        reserve_cpus=reserve_cpus,
        reserve_memory_mb=reserve_memory,
        ent_enabled=site.get("ent_enabled", bool, False),
        repository=repo.directory("path"),
        staging=staging.directory("path"),
        driver=driver_name,
        driver_settings=driver_settings,
        network=_network(network_reader),
        boot_timeout_s=driver.get("boot_timeout_s", float, 300.0),
        max_boots=site.positive("max_boots", 4),
    )
