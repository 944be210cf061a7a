"""The NoCloud seed: a node's contextualization documents (made by ``pcc.site.context``)
packed into an ISO9660 image labelled ``cidata`` that the guest reads as a disk."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from pcc.common.errors import DriverError
from pcc.drivers.base import NodeDocuments


def seed_files(docs: NodeDocuments) -> dict[str, str]:
    """The files of a node's seed, by name (vc-out.xml too, for images that look there)."""
    return {
        "meta-data": docs.meta_data,
        "user-data": docs.user_data,
        "network-config": docs.network_config,
        "vc-out.xml": docs.vc_out,
    }


def write_seed(directory: Path, files: dict[str, str], iso: Path) -> Path:
    """Pack the seed files into a NoCloud ISO labelled ``cidata``."""
    tool = shutil.which("genisoimage") or shutil.which("mkisofs")
    if tool is None:
        raise DriverError("genisoimage is not installed (Debian package genisoimage)")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        proc = subprocess.run(
            [tool, "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock", *sorted(files)],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise DriverError(f"cannot write the seed {iso}: {proc.stderr.strip()}")
    return iso
