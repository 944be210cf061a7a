"""The stand-in ``rocks`` program (:data:`STANDIN`, run as a process, never imported) and
what tests need around it: a private copy of it with its own state, a look at that state
(the stand-in's "Rocks database"), and faults to inject.

``recorded/*.txt`` are samples of what Rocks 6.2's ``rocks`` prints, for the parsers' unit
tests. They were reconstructed from Rocks 6.2's documentation (the KVM roll's users guide)
and the output code of its command base class, not captured from a live Rocks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).with_name("rocks")
RECORDED = Path(__file__).with_name("recorded")


def install(directory: Path) -> Path:
    """``directory/bin/rocks``, the stand-in with its state in ``directory/bin/rocks-state.json``;
    ``directory/bin/python3`` is this interpreter, for a PATH that skips slow shims."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    program = bin_dir / "rocks"
    if not program.exists():
        program.symlink_to(STANDIN)
    python = bin_dir / "python3"
    if not python.exists():
        python.symlink_to(sys.executable)
    return program


def path_with(program: Path) -> str:
    """A PATH on which ``#!/usr/bin/env python3`` finds :func:`install`'s interpreter first."""
    return os.pathsep.join([str(program.parent), os.environ.get("PATH", "/usr/bin:/bin")])


def state_file(program: Path) -> Path:
    return program.parent / "rocks-state.json"


def read_state(program: Path) -> dict[str, Any]:
    path = state_file(program)
    if not path.exists():
        return {"hosts": [], "booted": {}, "orphan_domains": [], "faults": [], "log": []}
    return json.loads(path.read_text())


def update_state(program: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the state under the stand-in's own lock (it is created by a first command)."""
    path = state_file(program)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            raise FileNotFoundError(f"{path}: run a rocks command first")
        data = json.loads(path.read_text())
        change(data)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


@contextlib.contextmanager
def fault(program: Path, command: str, after: int, message: str | None = None) -> Iterator[None]:
    """Within it, ``command`` ("add cluster", "start host vm") fails once it has made
    ``after`` VMs."""
    entry: dict[str, Any] = {"command": command, "after": after}
    if message:
        entry["message"] = message
    update_state(program, lambda d: d.setdefault("faults", []).append(entry))
    try:
        yield
    finally:
        update_state(
            program, lambda d: d.__setitem__("faults", [f for f in d["faults"] if f["command"] != command])
        )


def commands_run(program: Path) -> list[list[str]]:
    return read_state(program).get("log", [])


def leftovers(program: Path, frontend: str) -> list[str]:
    """What Rocks still holds of the virtual cluster whose frontend VM is ``frontend``: its
    VMs, running domains nobody knows any more, VLAN interfaces no VM uses, addresses."""
    data = read_state(program)
    ours = {frontend} | {h["name"] for h in data["hosts"] if h["name"].startswith(f"vm-{frontend}-")}
    found = [f"VM {h['name']}" for h in data["hosts"] if h["name"] in ours]
    found += [f"running domain {d['name']} on {d['container']}" for d in data.get("orphan_domains", [])]
    vm_vlans = {i["vlan"] for h in data["hosts"] if h.get("vm") for i in h["interfaces"] if i.get("vlan")}
    for host in data["hosts"]:
        for iface in host["interfaces"]:
            if (iface["iface"] or "").startswith("vlan") and iface["vlan"] not in vm_vlans:
                found.append(f"interface {iface['iface']} on {host['name']} (no VM on VLAN {iface['vlan']})")
    return found
