"""Measure the site tool on this machine: `pragma boot` to all nodes running and to SSH
accepted (1 and 2 nodes), copy-on-write staging on a 1 GB and a 40 GB sparse base, and the
test image's build. Prints figures; it is not a test. Run as root or as a site account:

    .venv/bin/python bench/site_boot.py [--runs 3]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcc.dev import site_env  # noqa: E402
from pcc.dev.controller_env import ssh_login  # noqa: E402
from pcc.dev.demo import make_keypair  # noqa: E402
from pcc.drivers.libvirt.overlays import create_overlay  # noqa: E402


def median(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})"


def bench_boot(site: site_env.Site, private: Path, public: Path, cpus: int, runs: int) -> None:
    to_running, to_ssh = [], []
    for i in range(runs):
        cluster = f"bench{cpus}x{i}"
        t0 = time.monotonic()
        code, doc = site.pragma("boot", "tiny", str(cpus), f"key={public}", f"cluster={cluster}")
        running = time.monotonic() - t0
        if code != 0:
            raise RuntimeError(doc)
        ssh_login(private, doc["result"]["public_ip"], doc["result"]["ssh_port"], "true", interval=0.05)
        to_ssh.append(time.monotonic() - t0)
        to_running.append(running)
        site.pragma("clean", cluster)
    nodes = 1 + cpus
    print(
        f"pragma boot, {nodes} node(s): to all running {median(to_running)}; to SSH accepted {median(to_ssh)}"
    )


def bench_staging(root: Path, runs: int) -> None:
    base_qcow = root / "base-1g.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=full", str(base_qcow), "1G"],
        check=True,
    )
    base_raw = root / "base-40g.raw"
    with base_raw.open("wb") as fh:
        fh.truncate(40 << 30)  # sparse
    for base, fmt, label in (
        (base_qcow, "qcow2", "1 GB qcow2 (preallocated)"),
        (base_raw, "raw", "40 GB sparse raw"),
    ):
        times = []
        for i in range(max(runs, 5)):
            t0 = time.monotonic()
            create_overlay(base, fmt, root / f"ov-{fmt}-{i}.qcow2", "vda")
            times.append(time.monotonic() - t0)
        ms = [t * 1000 for t in times]
        print(
            f"staging an overlay on a {label} base: median {statistics.median(ms):.1f} ms "
            f"({', '.join(f'{v:.1f}' for v in ms)})"
        )
    t0 = time.monotonic()
    shutil.copyfile(base_qcow, root / "copy.qcow2")
    print(f"for comparison, copying the 1 GB base: {time.monotonic() - t0:.2f} s")


def bench_image(root: Path) -> None:
    out = root / "image"
    env = {**os.environ, "PCC_STATE_DIR": str(root / "state")}
    t0 = time.monotonic()
    subprocess.run(
        [str(REPO / "images" / "build_test_image.sh"), str(out)], env=env, check=True, capture_output=True
    )
    cold = time.monotonic() - t0
    t0 = time.monotonic()
    subprocess.run(
        [str(REPO / "images" / "build_test_image.sh"), str(out)], env=env, check=True, capture_output=True
    )
    warm = time.monotonic() - t0
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    total = sum(sizes.values())
    print(
        f"test image: cold build {cold:.1f} s (downloads included), warm re-run {warm:.2f} s; "
        f"{total / 1e6:.1f} MB ({', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sorted(sizes.items()))})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    account = site_env.site_account()
    scratch = Path(tempfile.mkdtemp(prefix="bench-site-", dir=REPO / ".state"))
    os.chmod(scratch, 0o755)
    os.chown(scratch, account.pw_uid, account.pw_gid)
    daemon = site_env.start_libvirt_session(account)
    try:
        site = site_env.Site(scratch, account, "127.0.0.2", (22300, 22399))
        site.write_config()
        keys = scratch / "keys"
        make_keypair(keys / "id")
        keys.chmod(0o755)
        (keys / "id.pub").chmod(0o644)
        for cpus in (0, 1):
            bench_boot(site, keys / "id", keys / "id.pub", cpus, args.runs)
        bench_staging(scratch, args.runs)
        bench_image(scratch)
    finally:
        site_env.stop_process(daemon)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
