"""Measure the reconcile pass and the site-probe job: 1 real site (sshd + `pragma check` on
127.0.0.7), then 50 sites of which 49 are loopback addresses that refuse connections or
accept and never answer (hang). Prints figures; it is not a test.

    .venv/bin/python bench/probe_scale.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PCC_STATE_DIR", str(REPO / ".state"))  # the install `make` made

from pcc.dev import controller_env, ssh_sites  # noqa: E402
from pcc.dev.demo import make_keypair  # noqa: E402
from pcc.dev.pools import scratch_pool  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with scratch_pool("bench-probe-") as (root, pool):
        hangers: list[socket.socket] = []
        site = None
        try:
            keys = root / "keys"
            make_keypair(keys / "ctl")
            site = ssh_sites.make_site(
                root, "real", "127.0.0.7", (22700, 22799), (keys / "ctl.pub").read_text()
            )
            (keys / "known_hosts").write_text(site.known_hosts_line + "\n")
            extra = []
            for i in range(49):
                address = f"127.0.1.{i + 1}"
                if i % 2:  # hangs: accepts TCP (backlog) but never speaks SSH
                    sock = socket.socket()
                    sock.bind((address, 2222))
                    sock.listen(64)
                    hangers.append(sock)
                extra.append(
                    f'[[sites]]\nname = "dead{i}"\nhost = "{address}"\nport = 2222\nuser = "nobody"\n'
                    f'key = "{keys / "ctl"}"\nknown_hosts = "{keys / "known_hosts"}"\n'
                    "cpus = 4\nmemory_gb = 2\n"
                )
            for label, text in (("1 site", ""), ("50 sites (49 refusing or hanging)", "\n".join(extra))):
                ctl_dir = root / f"ctl-{len(text)}"
                ctl_dir.mkdir()
                ctl = controller_env.make_controller(
                    ctl_dir,
                    pool,
                    [site],
                    keys / "ctl",
                    keys / "known_hosts",
                    keys / "ctl",
                    extra_sites=text.replace("[[sites]]", "\n[[sites]]"),
                )
                plain, probed = [], []
                for _ in range(args.runs):
                    t0 = time.monotonic()
                    ctl.reconciler.reconcile_once()
                    plain.append(time.monotonic() - t0)
                    t0 = time.monotonic()
                    probes = ctl.probe()
                    probed.append(time.monotonic() - t0)
                healthy = sum(p.health == "up" for p in probes)
                print(
                    f"{label}: reconcile pass median {statistics.median(plain) * 1000:.0f} ms; "
                    f"probe job (all sites, beside the loop) median {statistics.median(probed):.2f} s "
                    f"({', '.join(f'{v:.2f}' for v in probed)}); {healthy} up of {len(probes)}; "
                    "SSH timeout 5 s, up to 64 probes at once"
                )
        finally:
            for sock in hangers:
                sock.close()
            if site is not None:
                ssh_sites.stop_site(site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
