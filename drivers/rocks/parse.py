"""Pure parsers of what the ``rocks`` command prints (Rocks 6.2, base and KVM rolls).

Rocks prints every listing the same way (``endOutput`` of its command base class): a header
of the upper-cased column names, then one line per row; each column left-justified to its
widest cell (header included) and joined by one space; an empty cell filled with ``-`` to
the column's width. The first column is the row's owner, a host name followed by ``:``
(``:`` alone continues the previous owner, as in ``rocks list cluster``). When every row has
the same owner the owner column and its header are left out, so ``rocks list host interface
HOST`` for one host has no HOST column. Cells are found by the header's column offsets,
not by splitting on blanks: header names ("CLIENT NODES") and values may hold spaces.

Errors are printed on standard output as ``Error: MESSAGE`` followed by the command's usage
(exit status 1), or ``error - invalid rocks command "WORD"`` (exit status 255).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pcc.common.errors import DriverError


class RocksParseError(DriverError):
    """The ``rocks`` command printed something these parsers do not recognise."""


@dataclass(frozen=True)
class Row:
    owner: str | None  # None: the owner column was left out (one owner); "": continues the previous
    cells: dict[str, str | None]  # lower-case column name -> value (None: empty, printed as dashes)

    def get(self, column: str) -> str | None:
        return self.cells.get(column)


def _offsets(header: str, columns: Sequence[str]) -> list[int] | None:
    """Where each of ``columns`` starts in ``header``, if the header is exactly those columns."""
    starts, cursor = [], 0
    for name in columns:
        at = header.find(name.upper(), cursor)
        if at < 0 or header[cursor:at].strip():
            return None
        starts.append(at)
        cursor = at + len(name)
    return starts if not header[cursor:].strip() else None


def _cell(text: str) -> str | None:
    value = text.strip()
    return None if not value or set(value) == {"-"} else value


def parse_table(text: str, columns: Sequence[str]) -> list[Row]:
    """Rows of a Rocks listing whose columns are ``columns`` (the owner's first).

    Raises
    ------
    RocksParseError
        The header is neither ``columns`` nor ``columns`` without the owner column.
    """
    lines = [line.rstrip("\n") for line in text.splitlines() if line.strip()]
    if not lines:
        return []  # Rocks prints nothing at all (not even the header) for no rows
    header = lines[0]
    starts = _offsets(header, columns)
    names = list(columns)
    owned = starts is not None
    if starts is None:
        starts = _offsets(header, columns[1:])
        names = list(columns[1:])
    if starts is None:
        raise RocksParseError(
            f"unexpected rocks output: expected the columns {' '.join(c.upper() for c in columns)}, "
            f"got {header.strip()[:200]!r}"
        )
    rows = []
    for line in lines[1:]:
        cells = {}
        for index, name in enumerate(names):
            end = starts[index + 1] if index + 1 < len(starts) else len(line)
            cells[name] = line[starts[index] : end]
        owner = None
        if owned:
            raw = cells.pop(names[0]).strip()
            if not raw.endswith(":"):
                raise RocksParseError(f"unexpected rocks output: no 'HOST:' owner in {line.strip()[:200]!r}")
            owner = raw[:-1]
        rows.append(Row(owner, {k: _cell(v) for k, v in cells.items()}))
    return rows


def _owners(rows: list[Row], hosts: Sequence[str], what: str) -> list[tuple[str, Row]]:
    """Each row with its owner: the row's own, the previous row's for ':', or the one host asked
    about when Rocks left the owner column out."""
    out: list[tuple[str, Row]] = []
    previous: str | None = None
    for row in rows:
        owner = row.owner
        if owner is None:
            if len(hosts) != 1:
                raise RocksParseError(f"rocks {what}: rows without a host column for {len(hosts)} hosts")
            owner = hosts[0]
        elif owner == "":
            if previous is None:
                raise RocksParseError(f"rocks {what}: a continuation row before any host")
            owner = previous
        previous = owner
        out.append((owner, row))
    return out


def _int(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise RocksParseError(f"unexpected rocks output: {what} {value!r} is not a number") from None


# -- rocks list cluster [status=true] ---------------------------------------------------------
@dataclass(frozen=True)
class ClusterMember:
    name: str
    kind: str  # "VM" or "physical"
    status: str | None = None


@dataclass(frozen=True)
class ClusterEntry:
    frontend: str
    kind: str  # "VM": a virtual cluster; "physical": the physical cluster itself
    status: str | None
    clients: tuple[ClusterMember, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.frontend, *(c.name for c in self.clients))


def parse_list_cluster(text: str, status: bool = True) -> list[ClusterEntry]:
    """``rocks list cluster [status=true]``: each frontend (a row owned by it, its CLIENT NODES
    cell empty) and its client nodes (rows owned by ':')."""
    columns = ["frontend", "client nodes", "type", *(["status"] if status else [])]
    entries: list[ClusterEntry] = []
    for row in parse_table(text, columns):
        if row.owner is None:
            raise RocksParseError("rocks list cluster: no FRONTEND column")
        kind = row.get("type") or ""
        if row.owner:
            if row.get("client nodes") is not None:
                raise RocksParseError(f"rocks list cluster: frontend {row.owner} has a client cell")
            entries.append(ClusterEntry(row.owner, kind, row.get("status")))
            continue
        client = row.get("client nodes")
        if not entries or client is None:
            raise RocksParseError("rocks list cluster: a client node row without its frontend")
        last = entries[-1]
        member = ClusterMember(client, kind, row.get("status"))
        entries[-1] = ClusterEntry(last.frontend, last.kind, last.status, (*last.clients, member))
    return entries


# -- rocks list host vm [status=true] [showdisks=true] HOST... --------------------------------
@dataclass(frozen=True)
class VmEntry:
    host: str
    slice: int | None
    mem_mib: int
    cpus: int
    macs: tuple[str, ...]
    physhost: str | None  # the VM container it runs on
    virt_type: str | None
    status: str | None = None  # with status=true: active, paused, shutdown, shutoff, crashed, nostate...
    disks: tuple[str, ...] = ()  # with showdisks=true: "qcow2:/path,vda,virtio"
    cdrom: str | None = None


def parse_list_host_vm(
    text: str, hosts: Sequence[str] = (), status: bool = True, showdisks: bool = False
) -> dict[str, VmEntry]:
    """``rocks list host vm``: one entry per VM; a VM with several MACs or disks has more rows
    (same owner, empty SLICE, MEM and CPUS). ``hosts`` are the hosts asked about (needed when
    Rocks leaves the VM-HOST column out for a single VM)."""
    columns = ["vm-host", "slice", "mem", "cpus", "mac", "host", "virt-type"]
    columns += ["status"] if status else []
    columns += ["disk", "disksize", "cdrom"] if showdisks else []
    out: dict[str, VmEntry] = {}
    for owner, row in _owners(parse_table(text, columns), hosts, "list host vm"):
        mac, disk = row.get("mac"), row.get("disk")
        if owner in out:
            vm = out[owner]
            out[owner] = VmEntry(
                **{
                    **vm.__dict__,
                    "macs": (*vm.macs, *([mac] if mac else [])),
                    "disks": (*vm.disks, *([disk] if disk else [])),
                }
            )
            continue
        mem, cpus = _int(row.get("mem"), "MEM"), _int(row.get("cpus"), "CPUS")
        if mem is None or cpus is None:
            raise RocksParseError(f"rocks list host vm: {owner} has no MEM or CPUS")
        physhost = row.get("host")
        out[owner] = VmEntry(
            host=owner,
            slice=_int(row.get("slice"), "SLICE"),
            mem_mib=mem,
            cpus=cpus,
            macs=(mac,) if mac else (),
            physhost=None if physhost in (None, "None") else physhost,
            virt_type=row.get("virt-type"),
            status=row.get("status"),
            disks=(disk,) if disk else (),
            cdrom=row.get("cdrom"),
        )
    return out


# -- rocks list host interface HOST... --------------------------------------------------------
@dataclass(frozen=True)
class InterfaceEntry:
    host: str | None  # None: Rocks left the HOST column out and no single host was asked about
    subnet: str | None
    iface: str | None
    mac: str | None
    ip: str | None
    netmask: str | None
    module: str | None
    name: str | None
    vlan: int | None
    options: str | None
    channel: str | None


INTERFACE_COLUMNS = (
    "host",
    "subnet",
    "iface",
    "mac",
    "ip",
    "netmask",
    "module",
    "name",
    "vlan",
    "options",
    "channel",
)


def parse_list_host_interface(text: str, hosts: Sequence[str] = ()) -> list[InterfaceEntry]:
    """``rocks list host interface [HOST...]``: one entry per interface. A VLAN device of a
    physical host (``vlan4``) shows only its SUBNET, IFACE and VLAN."""
    rows = parse_table(text, INTERFACE_COLUMNS)
    if rows and rows[0].owner is None and len(hosts) != 1:
        pairs: list[tuple[str | None, Row]] = [(None, row) for row in rows]
    else:
        pairs = list(_owners(rows, hosts, "list host interface"))
    return [
        InterfaceEntry(
            host=owner,
            subnet=row.get("subnet"),
            iface=row.get("iface"),
            mac=row.get("mac"),
            ip=row.get("ip"),
            netmask=row.get("netmask"),
            module=row.get("module"),
            name=row.get("name"),
            vlan=_int(row.get("vlan"), "VLAN"),
            options=row.get("options"),
            channel=row.get("channel"),
        )
        for owner, row in pairs
    ]


# -- rocks list host [HOST...] ------------------------------------------------------------
@dataclass(frozen=True)
class HostEntry:
    host: str | None
    membership: str | None
    cpus: int | None


def parse_list_host(text: str, hosts: Sequence[str] = ()) -> list[HostEntry]:
    """``rocks list host``: HOST MEMBERSHIP CPUS RACK RANK RUNACTION INSTALLACTION."""
    columns = ["host", "membership", "cpus", "rack", "rank", "runaction", "installaction"]
    rows = parse_table(text, columns)
    if rows and rows[0].owner is None and len(hosts) != 1:
        pairs: list[tuple[str | None, Row]] = [(None, row) for row in rows]
    else:
        pairs = list(_owners(rows, hosts, "list host"))
    return [HostEntry(owner, row.get("membership"), _int(row.get("cpus"), "CPUS")) for owner, row in pairs]


# -- rocks add cluster ... ----------------------------------------------------------------------
_CREATED = re.compile(r"created (frontend|compute) VM named:\s*(\S+)")


def parse_add_cluster(text: str) -> tuple[str | None, tuple[str, ...]]:
    """The frontend and the compute VMs ``rocks add cluster`` reports it created."""
    frontend: str | None = None
    computes: list[str] = []
    for kind, name in _CREATED.findall(text):
        if kind == "frontend":
            frontend = name
        else:
            computes.append(name)
    return frontend, tuple(computes)


def parse_version(text: str) -> str:
    """``rocks report version``: one line, e.g. ``6.2``."""
    version = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not re.fullmatch(r"\d+(\.\d+)*", version):
        raise RocksParseError(f"rocks report version: unexpected {text.strip()[:80]!r}")
    return version


def error_message(stdout: str, stderr: str) -> str:
    """The one line worth reporting of a failed ``rocks`` command."""
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("Error:"):
            return stripped[len("Error:") :].strip()
        if stripped.startswith("error - "):
            return stripped
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines:
        return lines[-1]  # a Python traceback's last line is its exception
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[0] if lines else "no output"
