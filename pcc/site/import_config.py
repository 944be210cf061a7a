"""``pragma import-config SITE_CONF [DRIVER_CONF]``: a pragma_boot site's configuration as
PCC's site TOML, so a PRAGMA site moves to ``pragma`` with one command.

pragma_boot's files (``etc/site_conf.conf``, ``etc/kvm_rocks.conf``, ...) are Python that
pragma_boot ran with ``execfile``. Here they are parsed with :mod:`ast` and only read: each
statement must be ``NAME = literal`` (strings, numbers, lists, tuples, dicts, True, False,
None), or ``NAME = range(A, B)`` with whole-number literals as pragma_boot's template writes
``vlans``; anything else is an error naming the file and the line. Nothing is executed.

What maps, and to what:

* ``site_conf.conf``: ``site_ve_driver`` -> ``[driver] name`` (kvm_rocks -> rocks,
  opennebula_kvm -> opennebula); ``temp_directory`` -> ``[staging] path``;
  ``repository_settings['repository_dir']`` -> ``[repository] path``;
* ``kvm_rocks.conf``: ``public_ips``, ``netmask``, ``gw``, ``dns`` -> ``[network.public]``
  (``mode = "bridge"``); ``vlans``, ``diskdir``, ``available_containers`` ->
  ``[driver.rocks]``; ``num_processors_reserved`` (per container) -> ``[site] reserve_cpus``;
* ``opennebula.conf`` (pragma_boot's OpenNebula settings — ``ENDPOINT``, ``CREDENTIALS``,
  ``PUBLIC_NETWORK``, ``PUBLIC_NETWORK_LEASES``, ``PRIVATE_BRIDGE`` — written as Python) ->
  ``[driver.opennebula]`` and ``[network.public]``; the password is never printed.

What has no equivalent is reported as a warning (a comment at the top of the TOML, and on
standard error), never dropped silently. The module is pure: the caller reads the files
and supplies what only the host knows (its name, CPUs and memory).
"""

from __future__ import annotations

import ast
import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pcc.common.errors import ConfigError
from pcc.common.names import CLUSTER_NAME

MAX_BYTES = 1 << 20
MAX_RANGE = 4096
DRIVERS = {"kvm_rocks": "rocks", "opennebula_kvm": "opennebula", "opennebula": "opennebula"}
ROCKS_COMMAND = "/opt/rocks/bin/rocks"  # where pragma_boot's kvm_rocks driver ran it from


class ImportConfigError(ConfigError):
    """A pragma_boot file that cannot be read as data, or lacks what the site TOML needs."""


# -- reading pragma_boot's Python-syntax files as data ---------------------------------------
def _range(node: ast.Call, where: str) -> list[int]:
    if node.keywords or not 1 <= len(node.args) <= 3:
        raise ImportConfigError(f"{where}: range() takes one to three whole numbers")
    bounds = []
    for arg in node.args:
        try:
            value = ast.literal_eval(arg)
        except (ValueError, TypeError, SyntaxError):
            value = None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ImportConfigError(f"{where}: range() takes whole-number literals only")
        bounds.append(value)
    values = range(*bounds)
    if len(values) > MAX_RANGE:
        raise ImportConfigError(f"{where}: range() of more than {MAX_RANGE} numbers")
    return list(values)


def _value(node: ast.expr, where: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "range":
            return _range(node, where)
        inner = node.args[0] if len(node.args) == 1 and not node.keywords else None
        if (
            node.func.id == "list"
            and isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id == "range"
        ):
            return _range(inner, where)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ImportConfigError(
            f"{where}: not a literal (only strings, numbers, lists, tuples, dicts, True, False, None "
            "and range(A, B) are read; nothing is run)"
        ) from None


def _statement(stmt: ast.stmt) -> str:
    names = {
        ast.Import: "an import",
        ast.ImportFrom: "an import",
        ast.FunctionDef: "a function definition",
        ast.ClassDef: "a class definition",
        ast.AugAssign: "an augmented assignment",
        ast.If: "an if statement",
        ast.For: "a loop",
        ast.While: "a loop",
        ast.With: "a with statement",
        ast.Try: "a try statement",
        ast.Expr: "an expression",
    }
    return next((text for kind, text in names.items() if isinstance(stmt, kind)), type(stmt).__name__)


def read_python_config(text: str, filename: str) -> dict[str, Any]:
    """The ``NAME = literal`` assignments of a pragma_boot configuration file, by name (a
    later assignment of a name wins, as it did when pragma_boot ran the file).

    Raises
    ------
    ImportConfigError
        The file is not Python, or holds a statement or value that is not plain data; the
        message names ``file:line``.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ImportConfigError(f"{filename}: larger than {MAX_BYTES} bytes")
    try:
        tree = ast.parse(text, filename=filename, mode="exec")
    except SyntaxError as exc:
        raise ImportConfigError(f"{filename}:{exc.lineno or 0}: not Python syntax: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ImportConfigError(f"{filename}: cannot be parsed: {exc}") from None
    values: dict[str, Any] = {}
    for stmt in tree.body:
        where = f"{filename}:{stmt.lineno}"
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        ):
            continue  # a docstring or a bare string: a comment
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            values[stmt.target.id] = _value(stmt.value, f"{where}: {stmt.target.id}")
            continue
        if not (
            isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            raise ImportConfigError(
                f"{where}: only NAME = value lines are read, found {_statement(stmt)} (nothing is run)"
            )
        name = stmt.targets[0].id
        values[name] = _value(stmt.value, f"{where}: {name}")
    return values


# -- a small TOML writer for what this module emits ------------------------------------------
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError("a lone surrogate cannot be written to TOML")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not written")
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def _comment(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Table:
    name: str  # dotted: "driver.rocks"
    entries: list[tuple[str, Any, str]] = field(default_factory=list)  # key, value, comment

    def add(self, key: str, value: Any, comment: str = "") -> None:
        self.entries.append((key, value, comment))


def toml_document(tables: Sequence[Table], header: Sequence[str] = ()) -> str:
    lines = [f"# {_comment(line)}" if line else "#" for line in header]
    for table in tables:
        if lines:
            lines.append("")
        lines.append("[" + ".".join(toml_key(part) for part in table.name.split(".")) + "]")
        for key, value, comment in table.entries:
            line = f"{toml_key(key)} = {toml_value(value)}"
            lines.append(f"{line}  # {_comment(comment)}" if comment else line)
    return "\n".join(lines) + "\n"


# -- pragma_boot's settings onto PCC's --------------------------------------------------------
@dataclass(frozen=True)
class HostFacts:
    """What the converter cannot read from pragma_boot's files."""

    name: str
    cpus: int
    memory_mb: int
    guessed: frozenset[str] = frozenset()  # which of name, cpus, memory_mb are this host's defaults


@dataclass(frozen=True)
class Imported:
    toml: str
    warnings: tuple[str, ...]

    def to_doc(self) -> dict[str, Any]:
        return {"toml": self.toml, "warnings": list(self.warnings)}


def _require(conf: Mapping[str, Any], key: str, kind: type | tuple[type, ...], filename: str) -> Any:
    if key not in conf:
        raise ImportConfigError(f"{filename}: {key} is not set (PCC's site configuration needs it)")
    value = conf[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImportConfigError(f"{filename}: {key} = {value!r}: expected {getattr(kind, '__name__', kind)}")
    return value


def _address(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ImportConfigError(f"{what}: {value!r} is not an IP address") from None


def public_range(addresses: Sequence[Any], what: str) -> str:
    """``FIRST-LAST`` of a list of addresses, which must be one contiguous block."""
    if not addresses:
        raise ImportConfigError(f"{what}: no addresses")
    parsed = sorted({ipaddress.ip_address(_address(a, what)) for a in addresses})
    if int(parsed[-1]) - int(parsed[0]) + 1 != len(parsed):
        raise ImportConfigError(
            f"{what}: {', '.join(map(str, parsed))} are not one contiguous block; PCC's [network.public] "
            "range is FIRST-LAST: keep one block (or renumber) and import again"
        )
    return f"{parsed[0]}-{parsed[-1]}"


def _netmask(value: Any, what: str) -> str:
    try:
        ipaddress.ip_network(f"0.0.0.0/{value}")
    except ValueError:
        raise ImportConfigError(f"{what}: {value!r} is not a netmask") from None
    return str(value)


def _dns(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value).strip())
    return [_address(v, what) for v in items if str(v).strip()]


def vlan_setting(vlans: Any, what: str) -> str | list[int]:
    if not isinstance(vlans, list | tuple) or not vlans:
        raise ImportConfigError(f"{what}: expected a list or range() of VLAN ids")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 4094 for v in vlans):
        raise ImportConfigError(f"{what}: VLAN ids are whole numbers within 2-4094")
    ids = sorted(set(vlans))
    return f"{ids[0]}-{ids[-1]}" if ids[-1] - ids[0] + 1 == len(ids) else ids


def _site_tables(
    site: Mapping[str, Any], site_file: str, facts: HostFacts, warnings: list[str]
) -> tuple[str, Table, Table, Table, Table]:
    pragma_driver = _require(site, "site_ve_driver", str, site_file)
    driver = DRIVERS.get(pragma_driver)
    if driver is None:
        raise ImportConfigError(
            f"{site_file}: site_ve_driver = {pragma_driver!r}: PCC has no driver for it "
            f"(it imports {', '.join(sorted(DRIVERS))})"
        )
    if not CLUSTER_NAME.match(facts.name):
        raise ImportConfigError(f"site name {facts.name!r}: lower-case letters, digits and '-' (name=...)")
    site_table = Table("site")
    site_table.add("name", facts.name)
    site_table.add("deployment_type", pragma_driver, "pragma_boot's site_ve_driver")
    guessed = sorted(facts.guessed & {"cpus", "memory_mb"})
    note = "this host's: set what the site offers"
    site_table.add("cpus", facts.cpus, note if "cpus" in guessed else "")
    site_table.add("memory_mb", facts.memory_mb, note if "memory_mb" in guessed else "")
    site_table.add("ent_enabled", False)
    if guessed:
        warnings.append(
            f"[site] {' and '.join(guessed)}: this host's; set what the site offers its virtual clusters "
            "(pragma_boot asked its back-end; import-config takes cpus= and memory_mb=)"
        )
    if "name" in facts.guessed:
        warnings.append(f"[site] name {facts.name!r}: this host's name (import-config takes name=)")

    repo = _require(site, "repository_settings", dict, site_file)
    repo_dir = _require(repo, "repository_dir", str, f"{site_file}: repository_settings")
    repository = Table("repository")
    repository.add("path", repo_dir, "holds vcdb.txt and the images' vc-in.xml")
    kind = repo.get("repository_class", "local")
    if kind != "local":
        unused = sorted(k for k in repo if k not in ("repository_class", "repository_dir", "vcdb_filename"))
        warnings.append(
            f"repository_class {kind!r}: PCC reads the images already in {repo_dir}; it does not "
            f"fetch them ({', '.join(unused) or 'nothing else'} not used): sync them with pragma_boot's "
            "`pragma sync repository` or by hand"
        )
    else:
        extra = sorted(k for k in repo if k not in ("repository_class", "repository_dir", "vcdb_filename"))
        if extra:
            warnings.append(f"repository_settings {', '.join(extra)}: not used by PCC")
    vcdb = repo.get("vcdb_filename", "vcdb.txt")
    if vcdb not in ("vcdb.txt", f"{repo_dir.rstrip('/')}/vcdb.txt"):
        warnings.append(f"vcdb_filename {vcdb!r}: PCC reads {repo_dir}/vcdb.txt: rename or link it")

    staging = Table("staging")
    temp = site.get("temp_directory", site.get("temporary_directory"))
    if isinstance(temp, str) and temp:
        staging.add("path", temp, "pragma_boot's temp_directory: disks, seeds, allocations")
    else:
        staging.add("path", "/var/lib/pragma/staging")
        warnings.append("temp_directory is not set: [staging] path is /var/lib/pragma/staging")
    if "log_directory" in site:
        warnings.append(
            f"log_directory {site['log_directory']!r}: pragma logs to standard error "
            "(boot takes logfile=PATH)"
        )
    known = {
        "site_ve_driver",
        "temp_directory",
        "temporary_directory",
        "log_directory",
        "repository_settings",
    }
    for name in sorted(set(site) - known):
        warnings.append(f"{site_file}: {name} is not used by PCC")
    driver_table = Table("driver")
    driver_table.add("name", driver)
    return driver, site_table, repository, staging, driver_table


def _rocks_tables(
    conf: Mapping[str, Any], filename: str, site_table: Table, warnings: list[str]
) -> list[Table]:
    rocks = Table("driver.rocks")
    rocks.add("command", ROCKS_COMMAND)
    if "vlans" in conf:
        rocks.add("vlans", vlan_setting(conf["vlans"], f"{filename}: vlans"), "private VLANs PCC may use")
    else:
        warnings.append(f"{filename}: vlans is not set: the rocks driver may use any free VLAN (2-4094)")
    containers: list[str] = []
    if conf.get("available_containers"):
        value = conf["available_containers"]
        containers = value.split() if isinstance(value, str) else [str(v) for v in value]
        rocks.add("container_hosts", containers, "pragma_boot's available_containers")
    diskdir = conf.get("diskdir") or ""
    if diskdir:
        rocks.add("disk_dir", diskdir, "pragma_boot's diskdir: VM containers must see it (NFS)")
    else:
        warnings.append(
            "diskdir is empty: node disks go to [staging] path/rocks, which every VM container "
            "must see at the same path; set [driver.rocks] disk_dir to a shared directory if it is not"
        )
    reserved = conf.get("num_processors_reserved")
    if isinstance(reserved, int) and not isinstance(reserved, bool) and reserved > 0:
        cpus = next(v for k, v, _ in site_table.entries if k == "cpus")
        total = reserved * len(containers)
        if not containers:
            warnings.append(
                f"num_processors_reserved = {reserved} is per VM container: set [site] reserve_cpus to "
                "it times the number of containers"
            )
        elif total >= cpus:
            warnings.append(
                f"num_processors_reserved: {total} CPUs reserved, [site] cpus is {cpus}: set both"
            )
        else:
            site_table.add(
                "reserve_cpus", total, f"num_processors_reserved {reserved} x {len(containers)} containers"
            )
    if conf.get("additional_interfaces"):
        warnings.append(
            f"additional_interfaces {sorted(conf['additional_interfaces'])}: the rocks driver does not "
            "support ENT interfaces"
        )
    known = {
        "public_ips",
        "netmask",
        "gw",
        "dns",
        "vlans",
        "diskdir",
        "available_containers",
        "num_processors_reserved",
        "additional_interfaces",
    }
    for name in sorted(set(conf) - known):
        warnings.append(f"{filename}: {name} is not used by PCC")

    network = Table("network")
    network.add("mode", "bridge", "each frontend VM gets a public address of its own")
    network.add("private_cidr", "10.1.0.0/24", "each cluster's private network, on its own VLAN")
    network.add("private_bridge", "eth0", "not used by the rocks driver: Rocks attaches VMs itself")
    public = Table("network.public")
    ips = _require(conf, "public_ips", list | tuple, filename)
    public.add("range", public_range(ips, f"{filename}: public_ips"), "pragma_boot's public_ips")
    public.add("netmask", _netmask(_require(conf, "netmask", str, filename), f"{filename}: netmask"))
    public.add("gateway", _address(_require(conf, "gw", str, filename), f"{filename}: gw"))
    if conf.get("dns"):
        public.add("dns", _dns(conf["dns"], f"{filename}: dns"))
    public.add("bridge", "eth1", "not used by the rocks driver")
    return [rocks, network, public]


def _upper(conf: Mapping[str, Any]) -> dict[str, Any]:
    return {k.upper(): v for k, v in conf.items()}


def _opennebula_tables(conf: Mapping[str, Any], filename: str, warnings: list[str]) -> list[Table]:
    values = _upper(conf)
    one = Table("driver.opennebula")
    one.add("endpoint", _require(values, "ENDPOINT", str, filename), "OpenNebula's XML-RPC endpoint")
    credentials = _require(values, "CREDENTIALS", str, filename)
    user, sep, _password = credentials.partition(":")
    if not sep or not user:
        raise ImportConfigError(f"{filename}: CREDENTIALS: expected 'user:password'")
    one.add("user", user)
    one.add("password_file", "opennebula-password", "write CREDENTIALS' password there (mode 0600)")
    warnings.append(
        "the OpenNebula password is not printed: put it, alone, in opennebula-password beside this "
        "file (chmod 600), or point [driver.opennebula] password_file elsewhere"
    )
    one.add("public_network", _require(values, "PUBLIC_NETWORK", str, filename), "frontends' public network")
    network = Table("network")
    network.add("mode", "bridge", "each frontend gets a public address of its own")
    network.add("private_cidr", "10.1.0.0/24", "each cluster's private network")
    bridge = values.get("PRIVATE_BRIDGE")
    if isinstance(bridge, str) and bridge:
        one.add("private_vnet", {"VN_MAD": "bridge", "BRIDGE": bridge}, "pragma_boot's PRIVATE_BRIDGE")
        network.add("private_bridge", bridge)
    else:
        one.add("private_vnet", {"VN_MAD": "bridge"}, "set BRIDGE (or another VN_MAD)")
        network.add("private_bridge", "br0")
        warnings.append(f"{filename}: PRIVATE_BRIDGE is not set: check [driver.opennebula] private_vnet")
    leases = _require(values, "PUBLIC_NETWORK_LEASES", dict, filename)
    public = Table("network.public")
    first = public_range(list(leases), f"{filename}: PUBLIC_NETWORK_LEASES")
    public.add("range", first, "the addresses of pragma_boot's PUBLIC_NETWORK_LEASES")
    if "NETMASK" in values and "GATEWAY" in values:
        public.add("netmask", _netmask(values["NETMASK"], f"{filename}: NETMASK"))
        public.add("gateway", _address(values["GATEWAY"], f"{filename}: GATEWAY"))
    else:
        guess = ipaddress.ip_network(f"{first.split('-')[0]}/24", strict=False)
        public.add("netmask", "255.255.255.0", "guessed: check it")
        public.add("gateway", str(next(guess.hosts())), "guessed: check it")
        warnings.append(
            f"{filename}: pragma_boot's OpenNebula settings have no netmask or gateway (OpenNebula's "
            "network had them): [network.public] netmask and gateway are guesses, check them"
        )
    if values.get("DNS"):
        public.add("dns", _dns(values["DNS"], f"{filename}: DNS"))
    public.add(
        "bridge", bridge if isinstance(bridge, str) and bridge else "br0", "not used by the opennebula driver"
    )
    warnings.append("PUBLIC_NETWORK_LEASES' MAC addresses are not used: PCC plans each NIC's MAC")
    known = {"ENDPOINT", "CREDENTIALS", "PUBLIC_NETWORK", "PUBLIC_NETWORK_LEASES", "PRIVATE_BRIDGE"}
    known |= {"NETMASK", "GATEWAY", "DNS"}
    for name in sorted(set(values) - known):
        warnings.append(f"{filename}: {name} is not used by PCC")
    return [one, network, public]


def convert(
    site: Mapping[str, Any],
    driver_conf: Mapping[str, Any] | None,
    facts: HostFacts,
    site_file: str = "site_conf.conf",
    driver_file: str | None = None,
) -> Imported:
    """The site TOML for pragma_boot's settings (as :func:`read_python_config` returns them)."""
    warnings: list[str] = []
    driver, site_table, repository, staging, driver_table = _site_tables(site, site_file, facts, warnings)
    name = driver_file or {"rocks": "kvm_rocks.conf", "opennebula": "opennebula.conf"}[driver]
    if driver_conf is None:
        raise ImportConfigError(
            f"{site_file}: site_ve_driver {site['site_ve_driver']!r} needs its driver file too: "
            f"pragma import-config {site_file} {name}"
        )
    if driver == "rocks":
        rest = _rocks_tables(driver_conf, name, site_table, warnings)
    else:
        rest = _opennebula_tables(driver_conf, name, warnings)
    header = [
        "A PCC site configuration for `pragma`, made by `pragma import-config` from",
        f"pragma_boot's {site_file}" + (f" and {driver_file}" if driver_file else "") + ".",
        "Read as data, never executed. Check these before use:" if warnings else "",
        *(f"- {w}" for w in warnings),
    ]
    driver_tables = [t for t in rest if t.name.startswith("driver.")]
    others = [t for t in rest if not t.name.startswith("driver.")]
    tables = [site_table, repository, staging, driver_table, *driver_tables, *others]
    return Imported(toml_document(tables, [h for h in header if h]), tuple(warnings))


def import_config(
    site_text: str, site_file: str, driver_text: str | None, driver_file: str | None, facts: HostFacts
) -> Imported:
    """Both files' text to the site TOML (reading them is the caller's)."""
    site = read_python_config(site_text, site_file)
    driver = (
        read_python_config(driver_text, driver_file or "driver.conf") if driver_text is not None else None
    )
    return convert(site, driver, facts, site_file, driver_file)
