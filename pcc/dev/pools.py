"""A throw-away personal pool beside the installed one, for benches and recorders: its own
directory under the state directory (reachable by the pool's user), started, pointed at by
this process's bindings, and stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pcc.condor.adapter import use_pool
from pcc.condor.pool import PersonalPool
from pcc.controller.settings import Settings


@contextlib.contextmanager
def scratch_pool(prefix: str) -> Iterator[tuple[Path, PersonalPool]]:
    """``(root, pool)``: a fresh directory and a running pool whose state lives in it."""
    installed = Settings.from_env().embedded_pool()
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=installed.local_dir.parent))
    os.chmod(root, 0o755)
    pool = PersonalPool(prefix=installed.prefix, local_dir=root / "pool")
    pool.start()
    use_pool(pool.config_file, pool.client_env().get("CONDOR_IDS"))
    try:
        yield root, pool
    finally:
        pool.stop()
        shutil.rmtree(root, ignore_errors=True)
