"""``[driver.rocks]``: where the ``rocks`` command is, which VLANs and VM containers PCC may
use, and where node disks and seeds are written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pcc.common.tomlcfg import TomlReader
from pcc.drivers.base import DriverSettings

HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62}[A-Za-z0-9])?\Z")
NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,15}\Z")
# A Rocks disk specification is "TYPE:PATH,DEVICE,BUS" and several are separated by blanks,
# so paths the driver hands Rocks hold none of ':', ',' or blanks.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*\Z")
VLAN_MIN, VLAN_MAX = 2, 4094  # 1 is the switches' default VLAN; 0 and 4095 are reserved


def parse_vlans(value: Any) -> tuple[int, ...]:
    """VLAN ids from "4-19", "4-19,30,40-45" or a list of ids; ValueError when not."""
    items: list[int] = []
    if isinstance(value, str):
        for part in filter(None, (p.strip() for p in value.split(","))):
            first, sep, last = part.partition("-")
            try:
                lo, hi = int(first), int(last) if sep else int(first)
            except ValueError:
                raise ValueError(f"not a VLAN id or FIRST-LAST range: {part!r}") from None
            if hi < lo:
                raise ValueError(f"empty range {part!r}")
            items.extend(range(lo, hi + 1))
    elif isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        items = list(value)
    else:
        raise ValueError("expected 'FIRST-LAST[,...]' or a list of VLAN ids")
    bad = [v for v in items if not VLAN_MIN <= v <= VLAN_MAX]
    if bad:
        raise ValueError(f"VLAN ids must be within {VLAN_MIN}-{VLAN_MAX}, got {bad[0]}")
    if not items:
        raise ValueError("no VLAN ids")
    return tuple(sorted(set(items)))


@dataclass(frozen=True)
class RocksSettings(DriverSettings):
    """``[driver.rocks]`` (all optional):

    * ``command`` — the ``rocks`` program, ``/opt/rocks/bin/rocks`` (tests point it at the stand-in);
    * ``vlans`` — VLAN ids for the clusters' private networks, ``"4-19"``, ``"4-19,30"`` or a list
      (default: any, 2-4094, as ``rocks add cluster`` itself would pick); those already used by
      an interface in Rocks are skipped;
    * ``disk_dir`` — where each node's disk (a qcow2 overlay on the repository image) and seed
      ISO are written, one directory per cluster; the VM containers must see it (and the
      repository) at the same paths, e.g. over NFS as pragma_boot's ``diskdir``. Default: the
      staging directory's ``rocks/``;
    * ``container_hosts`` — VM containers the compute VMs may go to (``container-hosts``;
      default: Rocks spreads them over all its VM containers);
    * ``fe_container`` — the host of the frontend VMs (``fe-container``; default the physical frontend);
    * ``name_prefix`` — what PCC's frontend VMs' names start with, ``pcc-``;
    * ``command_timeout_s`` — how long one ``rocks`` command may take (900);
    * ``poll_interval_s`` — how often a booting cluster's state is read (2).
    """

    command: str = "/opt/rocks/bin/rocks"
    vlans: tuple[int, ...] = tuple(range(VLAN_MIN, VLAN_MAX + 1))
    disk_dir: Path | None = None
    container_hosts: tuple[str, ...] = ()
    fe_container: str | None = None
    name_prefix: str = "pcc-"
    command_timeout_s: float = 900.0
    poll_interval_s: float = 2.0

    @classmethod
    def from_toml(cls, reader: TomlReader) -> Self:
        cls.reject_unknown(reader)
        command = reader.get("command", str, cls.command)
        if not command or "\n" in command:
            raise reader.fail("command", "must be the path of the rocks program")
        vlans = cls.vlans
        if "vlans" in reader.data:
            try:
                vlans = parse_vlans(reader.data["vlans"])
            except ValueError as exc:
                raise reader.fail("vlans", str(exc)) from None
        disk_dir = None
        if "disk_dir" in reader.data:
            disk_dir = reader.directory("disk_dir")
            if not SAFE_PATH.match(str(disk_dir)):
                raise reader.fail(
                    "disk_dir",
                    f"{str(disk_dir)!r}: use letters, digits and . _ / + - only (Rocks disk syntax)",
                )
        hosts = reader.get("container_hosts", list, [])
        for host in hosts:
            if not isinstance(host, str) or not HOST_NAME.match(host):
                raise reader.fail("container_hosts", f"not a host name: {host!r}")
        fe_container = reader.get("fe_container", str, "") or None
        if fe_container is not None and not HOST_NAME.match(fe_container):
            raise reader.fail("fe_container", f"not a host name: {fe_container!r}")
        prefix = reader.get("name_prefix", str, cls.name_prefix)
        if not NAME_PREFIX.match(prefix):
            raise reader.fail(
                "name_prefix", "1-16 lower-case letters, digits and '-', starting with a letter"
            )
        timeouts = {}
        for key in ("command_timeout_s", "poll_interval_s"):
            value = reader.get(key, float, getattr(cls, key))
            if value <= 0:
                raise reader.fail(key, f"must be > 0, got {value}")
            timeouts[key] = value
        return cls(
            command=command,
            vlans=vlans,
            disk_dir=disk_dir,
            container_hosts=tuple(hosts),
            fe_container=fe_container,
            name_prefix=prefix,
            **timeouts,
        )
