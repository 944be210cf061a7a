"""Measure the embedded pool: install (cold and warm), pool start to ready, and start to a
first job running and completed. Prints figures; it is not a test.

    PCC_STATE_DIR=.state .venv/bin/python bench/pool_startup.py [--cold-install] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pcc.condor.adapter import CondorAdapter, JobStatus, use_pool
from pcc.condor.pool import PersonalPool
from pcc.controller.settings import Settings

INSTALLER = Path(__file__).resolve().parents[1] / "condor_config" / "install_condor.py"


def time_install(prefix: Path, cache: Path) -> float:
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, str(INSTALLER), "--prefix", str(prefix), "--cache", str(cache)],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - t0


def one_start(installed: PersonalPool, root: Path) -> tuple[float, float, float]:
    local = Path(tempfile.mkdtemp(prefix="bench-", dir=root))
    os.chmod(local, 0o755)
    pool = PersonalPool(prefix=installed.prefix, local_dir=local)
    try:
        t0 = time.monotonic()
        pool.start(timeout=120)
        ready = time.monotonic() - t0
        use_pool(pool.config_file, pool.client_env().get("CONDOR_IDS"))
        condor = CondorAdapter()
        sub = condor.submit({"executable": "/bin/sleep", "arguments": "1", "should_transfer_files": "NO"})
        condor.wait_for(
            f"ClusterId == {sub.cluster}",
            lambda a: a.get("JobStatus") == JobStatus.RUNNING,
            ["JobStatus"],
            timeout=120,
            interval=0.05,
        )
        running = time.monotonic() - t0
        condor.wait_for(
            f"ClusterId == {sub.cluster}",
            lambda a: a.get("JobStatus") == JobStatus.COMPLETED,
            ["JobStatus"],
            timeout=120,
            interval=0.05,
            include_history=True,
        )
        completed = time.monotonic() - t0
        return ready, running, completed
    finally:
        pool.stop()
        shutil.rmtree(local, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold-install", action="store_true", help="also time an install with an empty cache")
    args = ap.parse_args()
    installed = Settings.from_env().embedded_pool()
    root = installed.local_dir.parent / "bench"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    if args.cold_install:
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            cold = time_install(Path(tmp) / "prefix", Path(tmp) / "cache")
            warm = time_install(Path(tmp) / "prefix", Path(tmp) / "cache")
        print(f"install: cold {cold:.1f} s (downloads included), warm re-run {warm:.2f} s")
    figures = [one_start(installed, root) for _ in range(args.runs)]
    for name, idx in (
        ("start -> pool ready", 0),
        ("start -> first job running", 1),
        ("start -> first job completed", 2),
    ):
        values = [f[idx] for f in figures]
        print(
            f"{name}: median {statistics.median(values):.2f} s over {len(values)} runs "
            f"({', '.join(f'{v:.2f}' for v in values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
