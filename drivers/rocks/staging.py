"""What the driver writes before Rocks starts a VM, in ``disk_dir/<cluster>/``:

* ``<host>-<dev>.qcow2`` — the node's disk, a qcow2 overlay whose backing file is the
  repository image (never written);
* ``<host>-seed.iso`` — its NoCloud seed (label ``cidata``: ``meta-data``, ``user-data``,
  ``network-config`` and pragma_boot's ``vc-out.xml``), attached as the VM's CD-ROM with
  ``rocks set host vm cdrom``;
* ``rocks.json`` — the VLAN chosen for the cluster, so that ``clean`` can find a VLAN
  interface a half-made ``rocks add cluster`` left on a VM container.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

from pcc.common.errors import DriverError
from pcc.drivers.base import NodeDocuments

NOTE = "rocks.json"


def _tool(*names: str, package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise DriverError(f"{names[0]} is not installed (Debian package {package})")


def _run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise DriverError(f"cannot {what}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def create_overlay(base: Path, base_format: str, overlay: Path) -> None:
    """``qemu-img create -f qcow2 -b BASE -F FORMAT OVERLAY`` (the format given: no probing)."""
    if not base.is_file():
        raise DriverError(f"repository image {base} does not exist")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    tool = _tool("qemu-img", package="qemu-utils")
    argv = [tool, "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", base_format, str(overlay)]
    _run(argv, f"stage {overlay} on {base}")


def virtual_size_gib(image: Path) -> int:
    """The disk's size as the guest sees it, in whole GiB (Rocks' ``disksize``)."""
    tool = _tool("qemu-img", package="qemu-utils")
    info = json.loads(_run([tool, "info", "--output=json", "-U", str(image)], f"read {image}"))
    return max(1, math.ceil(int(info.get("virtual-size", 0)) / (1 << 30)))


def seed_files(docs: NodeDocuments) -> dict[str, str]:
    return {
        "meta-data": docs.meta_data,
        "user-data": docs.user_data,
        "network-config": docs.network_config,
        "vc-out.xml": docs.vc_out,
    }


def write_seed(iso: Path, docs: NodeDocuments) -> None:
    """Pack a node's documents into a NoCloud ISO labelled ``cidata``."""
    tool = _tool("genisoimage", "mkisofs", package="genisoimage")
    iso.parent.mkdir(parents=True, exist_ok=True)
    files = seed_files(docs)
    with tempfile.TemporaryDirectory(dir=iso.parent) as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        argv = [tool, "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock", *sorted(files)]
        proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DriverError(f"cannot write the seed {iso}: {proc.stderr.strip()}")


def write_note(directory: Path, vlan: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / NOTE).write_text(json.dumps({"vlan": vlan}) + "\n")


def read_note(directory: Path) -> int | None:
    try:
        vlan = json.loads((directory / NOTE).read_text()).get("vlan")
    except (OSError, ValueError, AttributeError):
        return None
    return vlan if isinstance(vlan, int) and not isinstance(vlan, bool) else None
