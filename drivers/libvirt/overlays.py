"""Staging without copying: each node's disk is a qcow2 overlay whose backing file is the
repository image, so staging time does not grow with image size and the repository
image is never written."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from pcc.common.errors import DriverError
from pcc.drivers.libvirt.domain import StagedDisk


def qemu_img() -> str:
    tool = shutil.which("qemu-img")
    if tool is None:
        raise DriverError("qemu-img is not installed (Debian package qemu-utils)")
    return tool


def create_overlay(
    base: Path, base_format: str, overlay: Path, target: str, bus: str = "virtio"
) -> StagedDisk:
    """``qemu-img create -f qcow2 -b BASE -F FMT OVERLAY`` (``-F`` always: no format probing)."""
    if not base.exists():
        raise DriverError(f"repository image {base} does not exist")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            qemu_img(),
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(base.resolve()),
            "-F",
            base_format,
            str(overlay),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DriverError(f"cannot stage {overlay} on {base}: {proc.stderr.strip()}")
    return StagedDisk(path=overlay, format="qcow2", target=target, bus=bus)


def backing_file(overlay: Path) -> str | None:
    """The backing file qemu-img records for an overlay (for checks and tests)."""
    proc = subprocess.run(
        [qemu_img(), "info", "--output=json", "-U", str(overlay)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout).get("backing-filename")
