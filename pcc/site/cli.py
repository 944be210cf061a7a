"""`pragma`, the site tool, command-compatible with pragma_boot:

    pragma [--json] [--config PATH] [--debug] VERB [NOUN] ARGS... [name=value ...]

Positionals may also be given as ``name=value``. The command tree is data (:data:`COMMANDS`);
each leaf returns a result that is rendered as text or, with ``--json``, as one JSON
document on stdout. Logs go to stderr. Only :func:`main` turns exceptions into exit codes.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pcc import __version__
from pcc.common import protocol
from pcc.common.errors import (
    CapacityError,
    ConfigError,
    DriverError,
    PccError,
    UnsupportedError,
    UserInputError,
)
from pcc.site import config as site_config

log = logging.getLogger("pragma")


class ExitStatus(enum.IntEnum):
    """What `pragma` returns; :func:`exit_status` maps exceptions onto these, once."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    CAPACITY = 4
    BACKEND = 5
    UNSUPPORTED = 6


EXIT_CODES = """exit codes:
  0  success (also: shutdown/clean of a cluster that does not exist)
  1  unexpected error
  2  bad arguments (unknown image, invalid name, unreadable key, ...)
  3  invalid or missing site configuration
  4  not enough free capacity (CPUs, memory, addresses)
  5  the VM provisioner (driver) failed
  6  not supported at this site (e.g. ENT)"""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    positionals: tuple[str, ...]
    required: int
    options: tuple[str, ...]
    summary: str
    run: Callable[[Any, dict[str, str]], Any]
    render: Callable[[Any], str]

    @property
    def usage(self) -> str:
        pos = [p.upper() if i < self.required else f"[{p.upper()}]" for i, p in enumerate(self.positionals)]
        opts = [f"[{o}=...]" for o in self.options]
        return " ".join(["pragma", *self.words, *pos, *opts])


def _service(args: dict[str, str]) -> Any:
    from pcc.site.service import SiteService

    return SiteService(site_config.load(site_config.locate(args.get("--config"))))


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserInputError(f"{name} must be a whole number, got {value!r}") from None


def _bool(value: str, name: str) -> bool:
    if value.lower() in ("true", "yes", "1"):
        return True
    if value.lower() in ("false", "no", "0"):
        return False
    raise UserInputError(f"{name} must be true or false, got {value!r}")


def _memory(value: str) -> tuple[int | None, int | None]:
    fe, _, compute = value.partition(":")
    return (_int(fe, "mem") if fe else None, _int(compute, "mem") if compute else None)


def _ifaces(value: str) -> tuple[tuple[str, str | None], ...]:
    out = []
    for item in filter(None, value.split(",")):
        net, _, cidr = item.partition(":")
        out.append((net, cidr or None))
    return tuple(out)


def run_boot(_: Any, args: dict[str, str]) -> Any:
    from pcc.site.service import BootRequest

    if "logfile" in args:
        handler = logging.FileHandler(args["logfile"])
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    mem_fe, mem_compute = _memory(args.get("mem", ""))
    for value, name in ((mem_fe, "mem"), (mem_compute, "mem")):
        if value is not None and value < 64:
            raise UserInputError(f"{name}: at least 64 MiB per node, got {value}")
    req = BootRequest(
        image=args["vc_name"],
        cpus=_int(args["num_cpus"], "NUM_CPUS"),
        key_path=Path(args.get("key", str(Path.home() / ".ssh" / "id_rsa.pub"))),
        cluster=args.get("cluster"),
        memory_frontend_mib=mem_fe,
        memory_compute_mib=mem_compute,
        add_ifaces=_ifaces(args.get("add-iface", "")),
        enable_ent=_bool(args.get("enable-ent", "false"), "enable-ent"),
    )
    return _service(args).boot(req)


def render_boot(result: protocol.BootResult) -> str:
    fe = result.status.frontend
    public_ip, ssh_port = (fe.public_ip, fe.ssh_port) if fe else (None, None)
    where = f"{public_ip}" + (f" port {ssh_port}" if ssh_port not in (None, 22) else "")
    lines = [f"cluster {result.cluster} {result.message}: frontend {fe.name if fe else None} at {where}"]
    lines += [_node_line(n) for n in result.nodes]
    return "\n".join(lines)


def _node_line(n: protocol.NodeInfo) -> str:
    public = f"{n.public_ip}:{n.ssh_port}" if n.public_ip else "-"
    return (
        f"{n.name:<32} {n.role.value:<9} {n.state.value:<8} {n.vcpus:>3} cpu {n.memory_mib:>6} MiB "
        f"{n.private_ip or '-':<15} {public}"
    )


def run_list_cluster(_: Any, args: dict[str, str]) -> Any:
    return _service(args).list_cluster(args.get("name"))


def render_nodes(nodes: list[protocol.NodeInfo]) -> str:
    if not nodes:
        return "no clusters"
    header = f"{'NODE':<32} {'ROLE':<9} {'STATE':<8} {'CPUS':>7} {'MEMORY':>10} {'PRIVATE IP':<15} PUBLIC"
    return "\n".join([header, *(_node_line(n) for n in nodes)])


def run_list_repository(_: Any, args: dict[str, str]) -> Any:
    return _service(args).list_repository()


def render_repository(images: list[protocol.ImageInfo]) -> str:
    lines = []
    for image in images:
        sizes = []
        for role in ("frontend", "compute"):
            if role in image.roles:
                disks = image.roles[role]["disks"]
                sizes.append(
                    f"{role} {'+'.join(str(d['size_bytes'] or '?') for d in disks)} B "
                    f"({'/'.join(d['format'] for d in disks)})"
                )
        lines.append(f"{image.name:<20} {', '.join(sizes):<60} {image.description}")
    return "\n".join(lines) or "no images"


def run_shutdown(_: Any, args: dict[str, str]) -> Any:
    return _service(args).shutdown(args["name"])


def run_clean(_: Any, args: dict[str, str]) -> Any:
    return _service(args).clean(args["name"])


def render_message(result: protocol.ActionResult) -> str:
    return f"cluster {result.cluster}: {result.message}"


def run_check(_: Any, args: dict[str, str]) -> Any:
    return _service(args).check()


def render_check(r: protocol.CheckReport) -> str:
    driver = r.driver
    lines = [
        f"site {r.site}: {'OK' if r.ok else 'PROBLEMS'}",
        f"pragma version: {r.pragma_version}",
        f"deployment type: {r.deployment_type}",
        f"ENT enabled: {'yes' if r.ent_enabled else 'no'}",
        f"driver {driver.get('name')}: {'reachable' if driver.get('reachable') else 'UNREACHABLE'} "
        f"({driver.get('message')})",
        f"repository {r.repository_path}: {len(r.images or ())} images",
        f"CPUs: {r.cpus.free} free of {r.cpus.total} ({r.cpus.reserved} reserved)",
        f"memory: {r.memory_mb.free} MB free of {r.memory_mb.total} MB ({r.memory_mb.reserved} reserved)",
    ]
    return "\n".join(lines + [f"problem: {p}" for p in r.problems])


def _host_facts(args: dict[str, str]) -> Any:
    """What import-config cannot read from pragma_boot's files: this host's name, CPUs and memory
    (each overridden by name=, cpus=, memory_mb=)."""
    from pcc.site.import_config import HostFacts

    default = (
        re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-") or "pragma-site"
    )
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        memory = 1024
    return HostFacts(
        name=args.get("name", default[:40].strip("-") or "pragma-site"),
        cpus=_int(args["cpus"], "cpus") if "cpus" in args else os.cpu_count() or 1,
        memory_mb=_int(args["memory_mb"], "memory_mb") if "memory_mb" in args else max(memory, 1),
        guessed=frozenset(k for k in ("name", "cpus", "memory_mb") if k not in args),
    )


def _read_conf(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def run_import_config(_: Any, args: dict[str, str]) -> Any:
    from pcc.site.import_config import import_config

    site, driver = Path(args["site_conf"]), args.get("driver_conf")
    result = import_config(
        _read_conf(site),
        str(site),
        _read_conf(Path(driver)) if driver else None,
        driver,
        _host_facts(args),
    )
    for warning in result.warnings:
        log.warning("import-config: %s", warning)
    return result


def render_import_config(result: Any) -> str:
    return str(result.toml).rstrip("\n")


COMMANDS: tuple[Command, ...] = (
    Command(
        ("boot",),
        ("vc_name", "num_cpus"),
        2,
        ("key", "mem", "add-iface", "enable-ent", "cluster", "logfile", "loglevel"),
        "boot a virtual cluster: a frontend, plus compute nodes adding up to NUM_CPUS (0: frontend only);"
        " key=- reads the public key from standard input",
        run_boot,
        render_boot,
    ),
    Command(
        ("list", "cluster"),
        ("name",),
        0,
        (),
        "nodes of one cluster (or of all): state, CPUs, addresses",
        run_list_cluster,
        render_nodes,
    ),
    Command(
        ("list", "repository"),
        (),
        0,
        (),
        "images in the site's repository",
        run_list_repository,
        render_repository,
    ),
    Command(
        ("shutdown",), ("name",), 1, (), "stop a cluster's nodes (idempotent)", run_shutdown, render_message
    ),
    Command(
        ("clean",),
        ("name",),
        1,
        (),
        "stop a cluster and remove its disks, seeds and addresses (idempotent)",
        run_clean,
        render_message,
    ),
    Command(
        ("check",),
        (),
        0,
        (),
        "self-check for health probes: config, driver, repository, capacity",
        run_check,
        render_check,
    ),
    Command(
        ("import-config",),
        ("site_conf", "driver_conf"),
        1,
        ("name", "cpus", "memory_mb"),
        "print the site TOML for pragma_boot's site_conf.conf and its driver's file (kvm_rocks.conf,"
        " opennebula.conf), read as data and never run; name, cpus, memory_mb default to this host's",
        run_import_config,
        render_import_config,
    ),
)


def help_text(words: Sequence[str] = ()) -> str:
    matches = [c for c in COMMANDS if tuple(words) == c.words[: len(words)]] if words else list(COMMANDS)
    if not matches:
        raise UserInputError(f"no command {' '.join(words)!r}; try `pragma help`")
    lines = (
        []
        if words
        else [
            f"pragma {__version__} - PCC site tool (pragma_boot compatible)",
            "",
            "usage: pragma [--json] [--config PATH] [--debug] COMMAND ARGS...",
            "",
            "commands:",
        ]
    )
    for c in matches:
        lines += [f"  {c.usage}", f"      {c.summary}"]
    lines += ["", "  pragma help [COMMAND]", "  pragma --version"]
    if not words:
        lines += [
            "",
            "global flags:",
            "  --json         one JSON document on stdout (logs stay on stderr)",
            "  --config PATH  site configuration (default: $PRAGMA_CONFIG, /etc/pragma/site.toml)",
            "  --debug        debug logging and tracebacks",
            "",
            EXIT_CODES,
        ]
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> tuple[dict[str, str], Command | None, list[str]]:
    """Split global flags, find the command, and map its arguments by name."""
    flags: dict[str, str] = {}
    rest: list[str] = []
    it = iter(argv)
    for token in it:
        if token in ("--json", "--debug", "--version", "-h", "--help"):
            flags[token] = "1"
        elif token == "--config":
            flags["--config"] = next(it, "")
        elif token.startswith("--config="):
            flags["--config"] = token.split("=", 1)[1]
        elif token.startswith("-") and not token.lstrip("-").isdigit():
            raise UserInputError(f"unknown flag {token!r}; see `pragma help`")
        else:
            rest.append(token)
    if not rest or rest[0] == "help" or "-h" in flags or "--help" in flags:
        return flags, None, rest[1:] if rest and rest[0] == "help" else rest
    command = max(
        (c for c in COMMANDS if tuple(rest[: len(c.words)]) == c.words),
        key=lambda c: len(c.words),
        default=None,
    )
    if command is None:
        raise UserInputError(f"unknown command {' '.join(rest[:2])!r}; see `pragma help`")
    args: dict[str, str] = dict(flags)
    positionals = []
    for token in rest[len(command.words) :]:
        name, sep, value = token.partition("=")
        if sep and (name in command.options or name in command.positionals):
            if name in args:
                raise UserInputError(f"{name} given twice")
            args[name] = value
        elif sep and not name.lstrip("-").isdigit() and name.isidentifier():
            raise UserInputError(f"{command.usage}: unknown option {name!r}")
        else:
            positionals.append(token)
    free = [p for p in command.positionals if p not in args]
    if len(positionals) > len(free):
        raise UserInputError(f"too many arguments; usage: {command.usage}")
    args.update(zip(free, positionals, strict=False))
    missing = [p for p in command.positionals[: command.required] if p not in args]
    if missing:
        raise UserInputError(f"missing {', '.join(m.upper() for m in missing)}; usage: {command.usage}")
    if args.get("loglevel", "INFO").upper() not in LOG_LEVELS:
        raise UserInputError(f"loglevel must be one of {', '.join(LOG_LEVELS)}")
    return args, command, []


def exit_status(exc: BaseException) -> ExitStatus:
    if isinstance(exc, CapacityError):
        return ExitStatus.CAPACITY
    if isinstance(exc, ConfigError):
        return ExitStatus.CONFIG
    if isinstance(exc, UnsupportedError):
        return ExitStatus.UNSUPPORTED
    if isinstance(exc, UserInputError):
        return ExitStatus.USAGE
    if isinstance(exc, DriverError | OSError):
        return ExitStatus.BACKEND
    return ExitStatus.ERROR


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    debug = "--debug" in argv
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    name = "pragma"
    try:
        args, command, help_words = parse(argv)
        if "--version" in args and command is None:
            result: Any = {"version": __version__}
            text = f"pragma {__version__}"
        elif command is None:
            result = {"help": help_text(help_words)}
            text = result["help"]
        else:
            name = " ".join(command.words)
            logging.getLogger().setLevel(args.get("loglevel", "DEBUG" if debug else "INFO").upper())
            result = command.run(None, args)
            text = command.render(result)
    except Exception as exc:  # every failure is one line on stderr (and one JSON document)
        code = exit_status(exc)
        if debug:
            log.exception("%s failed", name)
        message = str(exc) if isinstance(exc, PccError) else f"{type(exc).__name__}: {exc}"
        kind = type(exc).__name__ if isinstance(exc, PccError | OSError) else "PccError"
        if as_json:
            json.dump(protocol.failure(name, protocol.ErrorDoc(kind, message, int(code))), out)
            out.write("\n")
        print(f"pragma: error: {message}", file=sys.stderr)
        return code
    if as_json:
        # dumps, not dump: json.dump streams through the pure-Python encoder, which costs a
        # listing of thousands of nodes several times more.
        out.write(json.dumps(protocol.success(name, _doc(result)), default=str) + "\n")
    else:
        print(text, file=out)
    return ExitStatus.OK


def _doc(result: Any) -> Any:
    """Protocol values become their documents; lists of them, lists of documents."""
    if hasattr(result, "to_doc"):
        return result.to_doc()
    if isinstance(result, list):
        return [_doc(r) for r in result]
    return result


if __name__ == "__main__":
    sys.exit(main())
