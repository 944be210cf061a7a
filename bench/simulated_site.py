"""Measure the simulated site (the `simulated` driver, a test and capacity-planning aid):
create 1,000 and then 3,000 clusters of a frontend and a compute through the driver, and
time ``list_nodes()`` of all of them, of one cluster, one more ``create_cluster``, and the
real site tool's ``pragma --json list cluster`` (a process: its start-up included). Prints
figures; it is not a test. Runs anywhere (it boots nothing):

    .venv/bin/python bench/simulated_site.py [--sizes 1000,3000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcc.common.tomlcfg import TomlReader  # noqa: E402
from pcc.dev.site_env import VENV_BIN  # noqa: E402
from pcc.drivers import BUILTIN  # noqa: E402
from pcc.drivers.simulated import SimulatedDriver  # noqa: E402
from pcc.site import config  # noqa: E402
from pcc.site.service import BootRequest, SiteService  # noqa: E402

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBENCHBENCHBENCHBENCHBENCHBENCHBENCHBENCHBENC bench@lab"


def site(root: Path) -> SiteService:
    path = root / "site.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [site]
            name = "bench"
            cpus = 100000
            memory_mb = 100000000
            [repository]
            path = "{REPO / "images" / "repository"}"
            [staging]
            path = "{root / "staging"}"
            [driver]
            name = "simulated"
            [driver.simulated]
            boot_s = 0
            [network]
            mode = "user"
            """
        )
    )
    cfg = config.load(path)
    base = SiteService(cfg)
    driver = SimulatedDriver.from_toml(
        TomlReader(path, cfg.driver_settings, "driver.simulated"), base.site_context
    )
    return SiteService(cfg, driver)


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms (min {min(values) * 1000:.1f})"


def timed(work: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000", help="cluster counts, ascending")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="pcc-bench-sim-") as tmp:
        svc = site(Path(tmp))
        driver = svc.driver
        assert isinstance(driver, SimulatedDriver)
        image = svc.repository.image("tiny")
        made = 0
        for size in sizes:
            t0 = time.perf_counter()
            while made < size:
                spec = svc.plan(BootRequest("tiny", 1, Path("-"), cluster=f"c{made}"), image, None, KEY)
                driver.create_cluster(spec, timeout=60)
                made += 1
            took = time.perf_counter() - t0
            nodes = driver.list_nodes()
            assert len(nodes) == 2 * size, len(nodes)
            megabytes = driver.store.path.stat().st_size / 1e6
            print(f"{size} clusters ({len(nodes)} nodes, state file {megabytes:.1f} MB)")
            print(f"  creating them: {took:.1f} s in all")
            print(f"  list_nodes() of all: {ms(timed(driver.list_nodes, args.runs))}")
            one = f"c{size // 2}"
            print(
                f"  list_nodes({one!r}): {ms(timed(lambda one=one: driver.list_nodes(one), args.runs * 4))}"
            )
            creates = []
            for i in range(args.runs):
                spec = svc.plan(BootRequest("tiny", 1, Path("-"), cluster=f"extra{i}"), image, None, KEY)
                t0 = time.perf_counter()
                driver.create_cluster(spec, timeout=60)
                creates.append(time.perf_counter() - t0)
                driver.clean(spec.name)
            print(f"  one create_cluster: {ms(creates)}")
            argv = [str(VENV_BIN / "pragma"), "--json", "--config", str(svc.config.path), "list", "cluster"]
            if "simulated" in BUILTIN and (VENV_BIN / "pragma").exists():  # `pragma` can load it
                listing = timed(
                    lambda argv=argv: subprocess.run(argv, capture_output=True, check=True),
                    max(3, args.runs // 2),
                )
                print(f"  `pragma --json list cluster` (a process): {ms(listing)}")


if __name__ == "__main__":
    main()
