"""The ``rocks`` command lines the driver runs: argument lists built from checked values
(never a shell string), and one runner that turns a failure into :class:`DriverError`.

The commands are those pragma_boot's kvm_rocks driver ran, in their documented
``name=value`` forms::

    rocks add cluster ip=IP num-computes=N fe-name=FE cluster-naming=true vlan=V
          cpus-per-compute=C mem-per-compute=M gateway=GW [container-hosts="A B"] [fe-container=H]
    rocks set host cpus HOST cpus=N
    rocks set host vm HOST mem=MIB
    rocks set host vm HOST disk="qcow2:PATH,vda,virtio" disksize=GIB
    rocks set host vm cdrom HOST cdrom=ISO
    rocks set host interface mac HOST iface=eth0 mac=MAC
    rocks set host interface ip HOST iface=eth0 ip=IP
    rocks set host boot HOST action=os
    rocks sync config
    rocks start host vm HOST / rocks stop host vm HOST
    rocks list cluster status=true / rocks list host vm status=true HOST... /
    rocks list host interface [HOST...] / rocks list host
    rocks remove cluster FE / rocks remove host HOST... / rocks remove host interface HOST iface=vlanV
    rocks report version
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pcc.common.errors import DriverError
from pcc.drivers.rocks.parse import error_message
from pcc.drivers.rocks.settings import HOST_NAME, SAFE_PATH

log = logging.getLogger(__name__)

MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}\Z")
IFACE = re.compile(r"^(?:eth|vlan)[0-9]{1,4}\Z")
BUSES = ("virtio", "ide", "scsi")
DISK_TYPES = ("file", "qcow2")


def _host(value: str) -> str:
    if not HOST_NAME.match(value):
        raise DriverError(f"not a Rocks host name: {value!r}")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise DriverError(f"not an IP address: {value!r}") from None


def _count(value: int, what: str, minimum: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DriverError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return str(value)


def _path(value: Path) -> str:
    text = str(value)
    if not SAFE_PATH.match(text):
        raise DriverError(f"path {text!r} cannot be handed to Rocks (letters, digits and . _ / + - only)")
    return text


@dataclass(frozen=True)
class DiskSpec:
    """One VM disk as Rocks writes it: ``TYPE:PATH,DEVICE,BUS``."""

    path: Path
    device: str = "vda"
    bus: str = "virtio"
    kind: str = "qcow2"  # "file" is raw
    size_gib: int = 1

    def spec(self) -> str:
        if (
            self.kind not in DISK_TYPES
            or self.bus not in BUSES
            or not re.fullmatch(r"[a-z]{2,3}[a-z]", self.device)
        ):
            raise DriverError(f"unsupported disk {self.kind}:{self.device},{self.bus}")
        return f"{self.kind}:{_path(self.path)},{self.device},{self.bus}"


@dataclass(frozen=True)
class RocksCommands:
    """Argument lists for the ``rocks`` program at ``program``."""

    program: str

    def _argv(self, *words: str) -> list[str]:
        return [self.program, *words]

    # -- reading ------------------------------------------------------------------------------
    def list_cluster(self) -> list[str]:
        return self._argv("list", "cluster", "status=true")

    def list_host_vm(self, hosts: Sequence[str]) -> list[str]:
        return self._argv("list", "host", "vm", "status=true", *map(_host, hosts))

    def list_host_interface(self, hosts: Sequence[str] = ()) -> list[str]:
        return self._argv("list", "host", "interface", *map(_host, hosts))

    def list_host(self) -> list[str]:
        return self._argv("list", "host")

    def report_version(self) -> list[str]:
        return self._argv("report", "version")

    # -- creating -----------------------------------------------------------------------------
    def add_cluster(
        self,
        ip: str,
        computes: int,
        frontend: str,
        vlan: int,
        cpus_per_compute: int,
        mem_per_compute: int,
        gateway: str | None = None,
        container_hosts: Sequence[str] = (),
        fe_container: str | None = None,
    ) -> list[str]:
        argv = self._argv(
            "add",
            "cluster",
            f"ip={_ip(ip)}",
            f"num-computes={_count(computes, 'num-computes', 0)}",
            f"fe-name={_host(frontend)}",
            "cluster-naming=true",
            f"vlan={_count(vlan, 'vlan', 2)}",
            f"cpus-per-compute={_count(cpus_per_compute, 'cpus-per-compute')}",
            f"mem-per-compute={_count(mem_per_compute, 'mem-per-compute')}",
        )
        if gateway:
            argv.append(f"gateway={_ip(gateway)}")
        if container_hosts:
            argv.append("container-hosts=" + " ".join(map(_host, container_hosts)))
        if fe_container:
            argv.append(f"fe-container={_host(fe_container)}")
        return argv

    def set_host_cpus(self, host: str, cpus: int) -> list[str]:
        return self._argv("set", "host", "cpus", _host(host), f"cpus={_count(cpus, 'cpus')}")

    def set_host_vm_mem(self, host: str, mem_mib: int) -> list[str]:
        return self._argv("set", "host", "vm", _host(host), f"mem={_count(mem_mib, 'mem')}")

    def set_host_vm_disks(self, host: str, disks: Sequence[DiskSpec]) -> list[str]:
        if not disks:
            raise DriverError(f"{host}: no disk")
        return self._argv(
            "set",
            "host",
            "vm",
            _host(host),
            "disk=" + " ".join(d.spec() for d in disks),
            "disksize=" + " ".join(_count(d.size_gib, "disksize") for d in disks),
        )

    def set_host_vm_cdrom(self, host: str, iso: Path | None) -> list[str]:
        return self._argv("set", "host", "vm", "cdrom", _host(host), f"cdrom={_path(iso) if iso else 'none'}")

    def set_host_interface_mac(self, host: str, iface: str, mac: str) -> list[str]:
        if not IFACE.match(iface) or not MAC.match(mac):
            raise DriverError(f"{host}: bad interface {iface!r} or MAC {mac!r}")
        return self._argv("set", "host", "interface", "mac", _host(host), f"iface={iface}", f"mac={mac}")

    def set_host_interface_ip(self, host: str, iface: str, ip: str) -> list[str]:
        if not IFACE.match(iface):
            raise DriverError(f"{host}: bad interface {iface!r}")
        return self._argv("set", "host", "interface", "ip", _host(host), f"iface={iface}", f"ip={_ip(ip)}")

    def set_host_boot(self, host: str, action: str = "os") -> list[str]:
        if action not in ("os", "install"):
            raise DriverError(f"bad boot action {action!r}")
        return self._argv("set", "host", "boot", _host(host), f"action={action}")

    def sync_config(self) -> list[str]:
        return self._argv("sync", "config")

    # -- running and removing -----------------------------------------------------------------
    def start_host_vm(self, host: str) -> list[str]:
        return self._argv("start", "host", "vm", _host(host))

    def stop_host_vm(self, host: str) -> list[str]:
        return self._argv("stop", "host", "vm", _host(host))

    def remove_cluster(self, frontend: str) -> list[str]:
        return self._argv("remove", "cluster", _host(frontend))

    def remove_host(self, hosts: Sequence[str]) -> list[str]:
        if not hosts:
            raise DriverError("remove host: no host")
        return self._argv("remove", "host", *map(_host, hosts))

    def remove_host_interface(self, host: str, iface: str) -> list[str]:
        if not IFACE.match(iface):
            raise DriverError(f"{host}: bad interface {iface!r}")
        return self._argv("remove", "host", "interface", _host(host), f"iface={iface}")


class RocksRunner:
    """Runs ``rocks`` command lines; a non-zero exit or an ``Error:`` is a DriverError
    carrying Rocks' own words."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def __call__(self, argv: Sequence[str]) -> str:
        program = argv[0]
        if "/" not in program:
            found = shutil.which(program)
            if found is None:
                raise DriverError(f"the rocks command {program!r} is not on PATH")
            program = found
        words = " ".join(argv[1:])
        log.debug("rocks %s", words)
        try:
            proc = subprocess.run(
                [program, *argv[1:]],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise DriverError(f"the rocks command {program} does not exist") from None
        except PermissionError:
            raise DriverError(f"the rocks command {program} cannot be run (permission denied)") from None
        except subprocess.TimeoutExpired:
            raise DriverError(f"rocks {words}: no answer within {self.timeout:.0f} s") from None
        if proc.returncode != 0 or proc.stdout.lstrip().startswith(("Error:", "error - ")):
            message = error_message(proc.stdout, proc.stderr)
            raise DriverError(f"rocks {words}: {message} (exit status {proc.returncode})")
        return proc.stdout
